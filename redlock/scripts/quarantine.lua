-- Quarantine (redlock/src/quarantine.rs), prepended to every script that can grant: a node
-- that lost its data (restart without persistence, FLUSHALL, failover to an empty replica)
-- has forgotten leases that other clients still count on, so it must not vote until every
-- one of them has expired. The loss is seen by the marker key (no ttl) vanishing with the
-- data; the quarantine then lasts the longest ttl any client may use, which the caller
-- appends as the last ARGV (ms). A client with a longer maximum stretches a running
-- quarantine to its own. Refusals are the error 'QUORATE_QUARANTINED <ms left>'. The usual
-- case (marker present, no quarantine) costs two EXISTS.
do
  local max_ms = tonumber(table.remove(ARGV))
  local lost = redis.call('EXISTS', 'quorate:marker') == 0
  if lost or redis.call('EXISTS', 'quorate:quarantine') == 1 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if lost then
      redis.call('SET', 'quorate:marker', 'lost:' .. now)
      redis.call('SET', 'quorate:quarantine', now, 'PX', max_ms)
    end
    local left = redis.call('PTTL', 'quorate:quarantine')
    if left > 0 then
      local stretched = tonumber(redis.call('GET', 'quorate:quarantine')) + max_ms - now
      if stretched > left then
        redis.call('PEXPIRE', 'quorate:quarantine', stretched)
        left = stretched
      end
      return redis.error_reply('QUORATE_QUARANTINED ' .. left)
    end
  end
end
