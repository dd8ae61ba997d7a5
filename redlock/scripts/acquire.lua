-- Take every lock key for token ARGV[1] with ttl ARGV[2] ms, or none of them.
-- ARGV[3] == '1': fenced; ARGV[4] (member), ARGV[5] (ticket), ARGV[6] (entry lifetime, ms),
-- ARGV[7] ('1' fair): the waiter's queue entry, '' when the caller is not queued.
-- KEYS: the n lock keys; with fencing their n fence counters (no ttl, they only grow); then
-- their n queues and n queue deadlines (queue.lua).
-- Any existing key refuses (even one with our own token: every round uses a fresh token, so
-- such a key is the leftover of a round being undone), except a grant to this waiter (its
-- grant token, queue.lua), which the round takes over. A
-- queued waiter that is refused is added to (or refreshed in) every key's queue. A free key is
-- refused to anyone behind a fair waiter (a caller that does not queue is behind every
-- waiter), and to a fair waiter behind anyone.
-- Returns {1, fence or -1, the next waiter's ticket or -1, the next fair waiter's ticket or -1}
-- or {0, i, pttl, rank or -1, holder[, deadline]}: the first refusing key (1-based), its
-- remaining ttl (-1 no expiry, -2 free but queued behind), our place in its queue (0 = head),
-- its holder (holder_of, prepended) and, for a queued waiter, the deadline its entry now has
-- (a later grant's wake-up names it: queue.lua).
local token, ttl = ARGV[1], ARGV[2]
local fenced = ARGV[3] == '1'
local member = ARGV[4]
local queued = member ~= ''
local ticket, lifetime, fair = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'
local parts = 3
if fenced then parts = parts + 1 end
local n = #KEYS / parts
local q0 = fenced and 2 * n or n
local mine = queued and grant_of(member)
local now = queued and server_ms() or 0

-- Whether a waiter this caller must let go first is queued for key i.
local function behind(i)
  local queue = KEYS[q0 + i]
  if not queued then
    if redis.call('EXISTS', queue) == 0 then
      return false
    end
    prune(queue, KEYS[q0 + n + i], server_ms())
    return fair_ahead(queue, nil, nil)
  end
  if fair then
    local first, first_ticket = head(queue)
    return first ~= nil and first ~= member
        and (first_ticket < ticket or (first_ticket == ticket and first < member))
  end
  return fair_ahead(queue, ticket, member)
end

local refused, pttl, holder = nil, -2, false
for i = 1, n do
  if queued then
    prune(KEYS[q0 + i], KEYS[q0 + n + i], now)
  end
  local value = redis.call('GET', KEYS[i])
  if value and not (queued and value == mine) then
    refused, pttl, holder = i, redis.call('PTTL', KEYS[i]), holder_of(value)
    break
  end
  if not value and behind(i) then
    refused = i
    break
  end
end

if refused then
  if not queued then
    return {0, refused, pttl, -1, holder}
  end
  for i = 1, n do
    enqueue(KEYS[q0 + i], KEYS[q0 + n + i], member, ticket, lifetime, now)
  end
  return {0, refused, pttl, redis.call('ZRANK', KEYS[q0 + refused], member), holder,
    now + lifetime}
end

local next_ticket, next_fair = -1, -1
for i = 1, n do
  redis.call('SET', KEYS[i], token, 'PX', ttl)
  if queued then
    redis.call('ZREM', KEYS[q0 + i], member)
    redis.call('ZREM', KEYS[q0 + n + i], member)
    local entries = redis.call('ZRANGE', KEYS[q0 + i], 0, -1, 'WITHSCORES')
    for j = 1, #entries, 2 do
      local waiter, waiter_ticket = entries[j], tonumber(entries[j + 1])
      if next_ticket < 0 or waiter_ticket < next_ticket then
        next_ticket = waiter_ticket
      end
      if string.sub(waiter, -2) == ':f' then
        if next_fair < 0 or waiter_ticket < next_fair then
          next_fair = waiter_ticket
        end
        break
      end
    end
  end
end
local fence = -1
if fenced then
  for i = n + 1, 2 * n do
    local value = fence_incr(KEYS[i])
    if value > fence then
      fence = value
    end
  end
end
return {1, fence, next_ticket, next_fair}
