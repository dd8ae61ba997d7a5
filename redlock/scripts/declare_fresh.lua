-- Declares a node fresh (Redlock::declare_fresh): sets the quarantine marker (KEYS[1]) if it
-- is missing, so that a server that never held a lock votes at once. Returns 1 if it set it.
local t = redis.call('TIME')
if redis.call('SET', KEYS[1], 'fresh:' .. t[1], 'NX') then
  return 1
end
return 0
