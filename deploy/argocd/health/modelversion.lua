-- Argo CD health of a clm.dev ModelVersion, from its conditions with the operator's precedence
-- (Retired, Production, Shadow, Failed, Candidate, Training); status.stage is only a fallback.
local hs = {}

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Training"
  return hs
end

local stage = obj.status.stage
if obj.status.conditions ~= nil and #obj.status.conditions > 0 then
  if is(obj, "Retired", "True") then
    stage = "Retired"
  elseif is(obj, "Production", "True") then
    stage = "Production"
  elseif is(obj, "Shadow", "True") then
    stage = "Shadow"
  elseif is(obj, "Trained", "False") or is(obj, "Evaluated", "False") then
    stage = "Failed"
  elseif is(obj, "Evaluated", "True") then
    stage = "Candidate"
  else
    stage = "Training"
  end
end

if stage == "Production" or stage == "Candidate" or stage == "Shadow" or stage == "Retired" then
  hs.status = "Healthy"
  hs.message = stage
elseif stage == "Failed" then
  hs.status = "Degraded"
  if is(obj, "Trained", "False") then
    hs.message = explain(condition(obj, "Trained"), "TrainingFailed")
  elseif is(obj, "Evaluated", "False") then
    hs.message = explain(condition(obj, "Evaluated"), "CriteriaNotMet")
  else
    hs.message = obj.status.message or "Failed"
  end
else
  hs.status = "Progressing"
  hs.message = stage or "Training"
end
return hs
