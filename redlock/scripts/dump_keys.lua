-- For each key of KEYS: {type, content, pttl}, for comparing a server's keyspace with a
-- memory node's (twin_check.rs). content: a string's value; a set's members; a hash's
-- 'field=value' entries; each list sorted bytewise so both sides agree on the order.
local out = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  local content = {}
  if kind == 'string' then
    content = {redis.call('GET', key)}
  elseif kind == 'set' then
    content = redis.call('SMEMBERS', key)
  elseif kind == 'hash' then
    local flat = redis.call('HGETALL', key)
    for j = 1, #flat, 2 do
      content[#content + 1] = flat[j] .. '=' .. flat[j + 1]
    end
  end
  table.sort(content)
  out[i] = {kind, content, redis.call('PTTL', key)}
end
return out
