-- Auto-routing of the demo PACS (Orthanc Lua, "OnStableSeries"): each PET series a scanner
-- stores here goes to the UniPET node once no instance has arrived for StableAge seconds.
-- The node's own results come back from AE UNIPET with ImageType DERIVED (PS3.3 C.7.6.1.1.2)
-- and are never routed again, so nothing loops.

local NODE = 'unipet'
local NODE_AET = 'UNIPET'

local function isFromNode(instanceId)
  local ok, remote = pcall(RestApiGet, '/instances/' .. instanceId .. '/metadata/RemoteAET')
  if ok and remote == NODE_AET then
    return true
  end
  local tags = ParseJson(RestApiGet('/instances/' .. instanceId .. '/simplified-tags'))
  local imageType = tags['ImageType'] or ''
  return string.find(imageType, 'DERIVED', 1, true) ~= nil
end

function OnStableSeries(seriesId, tags, metadata)
  if tags['Modality'] ~= 'PT' then
    return
  end
  local instances = ParseJson(RestApiGet('/series/' .. seriesId .. '/instances'))
  if #instances == 0 or isFromNode(instances[1]['ID']) then
    return
  end
  print('autoroute: series ' .. seriesId .. ' (' .. #instances .. ' instances) to ' .. NODE)
  RestApiPost('/modalities/' .. NODE .. '/store', seriesId)
end
