-- The watchdog's batch: extend many locks in one call. ARGV[1] is the number of locks; then,
-- per lock, its token, its ttl in ms and how many of KEYS (taken in order) are its keys.
-- Each lock is extended only if all its keys still hold its token, and never shortened (as
-- extend.lua).
-- Returns one 1/0 per lock, in order.
local locks = tonumber(ARGV[1])
local results = {}
local k = 1
local a = 2
for i = 1, locks do
  local token, ttl, count = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local ours = 1
  for j = k, k + count - 1 do
    if redis.call('GET', KEYS[j]) ~= token then
      ours = 0
      break
    end
  end
  if ours == 1 then
    for j = k, k + count - 1 do
      if redis.call('PTTL', KEYS[j]) < ttl then
        redis.call('PEXPIRE', KEYS[j], ttl)
      end
    end
  end
  results[i] = ours
  k = k + count
end
return results
