-- Helpers shared by the clm.dev health checks. Argo CD runs each check as one standalone script, so
-- render_health_patch.py prepends this file to every kind's script (tests run the same composition).

local function condition(o, ctype)
  if o.status == nil or o.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(o.status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function is(o, ctype, value)
  local c = condition(o, ctype)
  return c ~= nil and c.status == value
end

local function explain(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end
