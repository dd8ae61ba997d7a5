-- What an operator sees of lock key KEYS[1] on this node (inspect.rs): its value (the
-- holder's token, or 'q:<member>' when claimed for a queued waiter), its PTTL, the fence
-- counter KEYS[2], the length of the waiter queue KEYS[3], and the description of the
-- holder's client (the key ARGV[1] .. the token's first 16 hex digits; owner.rs).
-- Read only. The owner key is derived from the value, so this script, unlike the others,
-- reads a key it was not given (fine on a standalone server, which quorate's nodes are).
local value = redis.call('GET', KEYS[1])
local owner = false
if value and string.sub(value, 1, 2) ~= 'q:' and #value >= 16 then
  owner = redis.call('GET', ARGV[1] .. string.sub(value, 1, 16))
end
return {value or false, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]) or false,
  redis.call('ZCARD', KEYS[3]), owner}
