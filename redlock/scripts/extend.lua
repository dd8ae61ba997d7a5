-- Extend every key in KEYS to at least ARGV[2] ms, but only if all of them still hold token
-- ARGV[1]: a lock that is partly gone is not silently revived. Returns 1 or 0.
-- A key already holding longer keeps its ttl: an extension never shortens (the same rule as
-- PEXPIRE ... GT, written out so it runs on servers older than 7.0). A holder's validity is
-- then a lower bound however its extensions interleave (see ARCHITECTURE.md, "The lease").
local ttl = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= ARGV[1] then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
return 1
