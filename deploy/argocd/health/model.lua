-- Argo CD health of a clm.dev Model: Progressing while the operator has not seen the latest spec,
-- Degraded when a production pin is refused, Suspended when its schedule is suspended, Healthy when
-- a production version serves (Ready=True), Progressing otherwise (nothing serves yet).
local hs = {}

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

if obj.metadata ~= nil and obj.metadata.generation ~= nil
    and (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

local pin = condition(obj, "PinAccepted")
if pin ~= nil and pin.status == "False" then
  hs.status = "Degraded"
  hs.message = explain(pin, "PinRefused")
  return hs
end

local ready = condition(obj, "Ready")
local serving = obj.status.productionVersion

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  if serving ~= nil then
    hs.message = "Schedule suspended; production: " .. serving
  else
    hs.message = "Schedule suspended"
  end
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  if serving ~= nil then
    hs.message = "Production: " .. serving
  else
    hs.message = explain(ready, "Ready")
  end
  return hs
end

hs.status = "Progressing"
hs.message = explain(ready, "No production version yet")
return hs
