-- Argo CD health of a clm.dev TrainingJob. Conditions are the source of truth (status.phase is
-- derived from them); the phase is only a fallback for objects without conditions.
local hs = {}

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to accept the run"
  return hs
end

if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

local accepted = condition(obj, "Accepted")
local failed = condition(obj, "Failed")
local complete = condition(obj, "Complete")
local running = condition(obj, "Running")

if accepted ~= nil and accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = explain(accepted, "Rejected")
  return hs
end
if failed ~= nil and failed.status == "True" then
  hs.status = "Degraded"
  hs.message = explain(failed, "Failed")
  return hs
end
if complete ~= nil and complete.status == "True" then
  hs.status = "Healthy"
  if obj.status.modelVersion ~= nil then
    hs.message = "Trained " .. obj.status.modelVersion
  else
    hs.message = explain(complete, "Succeeded")
  end
  return hs
end
if running ~= nil and running.status == "True" then
  hs.status = "Progressing"
  hs.message = explain(running, "Running")
  return hs
end

-- No decisive condition yet: fall back to the phase.
local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded"
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = obj.status.message or obj.status.reason or "Failed"
else
  hs.status = "Progressing"
  hs.message = phase or "Pending"
end
return hs
