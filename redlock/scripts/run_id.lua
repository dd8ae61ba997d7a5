-- This server process's run_id, for quarantine.lua (prepended to it). Sent as a function
-- library (FCALL), this code runs once when the library loads, so the run_id is asked of INFO
-- once per server process: library state lives exactly as long as the process (a restart, a
-- FUNCTION FLUSH or a reload starts it afresh), and the run_id never changes within it. Sent
-- as an EVAL script, it runs on every call, and every call asks INFO (about half the cost of
-- an uncontended acquire).
local cached_run_id = nil
local function run_id()
  if not cached_run_id then
    local info = redis.call('INFO', 'server')
    -- a plain find: a pattern match over INFO costs as much again as INFO itself
    local at = string.find(info, 'run_id:', 1, true)
    cached_run_id = string.sub(info, at + 7, at + 46)
  end
  return cached_run_id
end
