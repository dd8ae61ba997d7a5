-- What an operator sees of lock key KEYS[1] on this node (inspect.rs): its value (the
-- holder's token, or 'q:<member>' when claimed for a queued waiter), its PTTL, the fence
-- counter KEYS[2], the length of the waiter queue KEYS[3], and the holder (holder.lua,
-- prepended).
local value = redis.call('GET', KEYS[1])
return {value or false, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]) or false,
  redis.call('ZCARD', KEYS[3]), holder_of(value)}
