-- Whether lock key KEYS[1] is held by anyone on this node: its PTTL in ms
-- (-2: absent, -1: held with no expiry). A key claimed for the next queued waiter (value
-- 'q:<member>', see quorate-redlock's queue.lua) is free, only reserved: -2.
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 2) == 'q:' then
  return -2
end
return redis.call('PTTL', KEYS[1])
