-- Declares a node fresh (Redlock::declare_fresh): sets the quarantine marker (KEYS[1]) to
-- 'fresh:<ms>:<run_id>' (quarantine.lua) when it is missing or was written under an earlier
-- server process, unless a quarantine (KEYS[2]) is running. So a new server, or a restarted
-- one that the operator knows kept every write (AOF with appendfsync always), votes at once;
-- a quarantine already begun is never cut short. Returns 1 if it set the marker.
local info = redis.call('INFO', 'server')
local at = string.find(info, 'run_id:', 1, true)
local run = string.sub(info, at + 7, at + 46)
local marker = redis.call('GET', KEYS[1])
if marker and string.sub(marker, -41) == ':' .. run then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], 'fresh:' .. now .. ':' .. run)
return 1
