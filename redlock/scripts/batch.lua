-- Single-key acquires and releases from one client, in one call, in order (backend/batch.rs).
-- KEYS[i] is request i's key. ARGV[1] is the release channel prefix; then three per request:
-- 'a', token, ttl in ms (an acquire: SET NX PX, as the unbatched path) or 'r', token, the
-- releasing client's id ('' for an undo, which announces nothing) (a release: release.lua).
-- Returns two integers per request: an acquire {1, 0} granted or {0, pttl} refused; a release
-- {deleted, 0}.
local prefix = ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  local a = 3 * i - 1
  local kind, token, extra = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  if kind == 'a' then
    if redis.call('SET', key, token, 'NX', 'PX', extra) then
      out[2 * i - 1], out[2 * i] = 1, 0
    else
      out[2 * i - 1], out[2 * i] = 0, redis.call('PTTL', key)
    end
  else
    local deleted = 0
    if redis.call('GET', key) == token then
      redis.call('DEL', key)
      deleted = 1
      if extra ~= '' then
        redis.call('PUBLISH', prefix .. key, extra)
      end
    end
    out[2 * i - 1], out[2 * i] = deleted, 0
  end
end
return out
