--[[
Apply one event to one call, atomically: the commit point of every state change.

In one round trip: resolve the call (by id, else by session), de-duplicate by envelope id,
compare-and-set the state against the moves the state machine allows, record history, append
to the durable feed with the next global seq, publish, and apply any events that were held for
the session until its call became known. Key names mirror telephony/keys.py.

ARGV: 1 prefix, 2 call id ('' = look up by session), 3 session id, 4 event name, 5 event id
('' = no de-duplication), 6 moves (JSON {from: to}), 7 at (ISO time), 8 source, 9 data (raw
JSON), 10 fields (JSON object of strings and integers, set on the call when the move applies;
'+name' increments, null deletes),
11 create (JSON object of a new call's fields, or ''), 12 create mode ('new': the call must
not exist yet; 'upsert': create when missing), 13 retention s, 14 feed maxlen, 15 dedupe TTL s,
16 pending TTL s, 17 now (ms, index score).

Returns {status, call id, from, to, seq}; status: applied | ignored | duplicate | held | exists
| orphan.
]]

local prefix = ARGV[1]
local retention = tonumber(ARGV[13])
local maxlen = ARGV[14]
local dedupe_ttl = tonumber(ARGV[15])
local pending_ttl = tonumber(ARGV[16])
local now_ms = ARGV[17]

local FINAL = {stopped = true, error = true}

local function publish(message, call_id)
  redis.call('XADD', prefix .. ':feed', 'MAXLEN', '~', maxlen, message.seq .. '-0',
             'm', message.json)
  redis.call('PUBLISH', prefix .. ':events', message.json)
  if call_id ~= '' then
    redis.call('PUBLISH', prefix .. ':calls:' .. call_id, message.json)
  end
end

local function encode(tbl, data)
  -- Splice the raw data JSON in, so cjson never re-encodes it ([] would become {}).
  local base = cjson.encode(tbl)
  return string.sub(base, 1, -2) .. ',"data":' .. data .. '}'
end

local function nullable(value)
  if value == false or value == nil or value == '' then return cjson.null end
  return value
end

local function count(status, to)
  redis.call('HINCRBY', prefix .. ':metrics', 'events_' .. status, 1)
  if to then redis.call('HINCRBY', prefix .. ':metrics', 'entered_' .. to, 1) end
end

local apply

local function drain(call_id, session_id)
  local held = prefix .. ':pending:' .. session_id
  local items = redis.call('LRANGE', held, 0, -1)
  redis.call('DEL', held)
  for _, item in ipairs(items) do
    local args = cjson.decode(item)
    args[1] = call_id
    apply(args)
  end
end

-- args: {call_id, session_id, event, event_id, moves, at, source, data, fields, create, mode}
apply = function(args)
  local call_id, session_id, event, event_id = args[1], args[2], args[3], args[4]
  local at, source, data = args[6], args[7], args[8]

  if call_id == '' and session_id ~= '' then
    call_id = redis.call('GET', prefix .. ':session:' .. session_id) or ''
  end
  local key = prefix .. ':call:' .. call_id
  local exists = call_id ~= '' and redis.call('EXISTS', key) == 1

  if args[11] == 'new' and exists then
    count('exists')
    return {'exists', call_id, '', '', 0}
  end
  if not exists and args[10] == '' then
    if session_id ~= '' then
      local held = prefix .. ':pending:' .. session_id
      redis.call('RPUSH', held, cjson.encode(args))
      redis.call('EXPIRE', held, pending_ttl)
      count('held')
      return {'held', call_id, '', '', 0}
    end
    -- No call and nothing to match it by: keep it on the feed, owned by no call.
    local seq = redis.call('INCR', prefix .. ':seq')
    local json = encode({seq = seq, callId = nullable(call_id), sessionId = cjson.null,
                         room = cjson.null, kind = cjson.null, event = event,
                         from = cjson.null, to = cjson.null, at = at, source = source,
                         ignored = true}, data)
    publish({seq = seq, json = json}, '')
    count('orphan')
    return {'orphan', call_id, '', '', seq}
  end

  -- Checked first, remembered last: a script that fails half-way (Redis does not roll
  -- back) must not make Daily's retry of this event look like a duplicate.
  local seen = prefix .. ':seen:' .. event_id
  if event_id ~= '' and redis.call('EXISTS', seen) == 1 then
    count('duplicate')
    return {'duplicate', call_id, '', '', 0}
  end

  local history = prefix .. ':history:' .. call_id
  if not exists then
    local create = cjson.decode(args[10])
    for name, value in pairs(create) do
      redis.call('HSET', key, name, value)
    end
    redis.call('HSET', key, 'id', call_id, 'state', 'new', 'createdAt', at, 'updatedAt', at)
    redis.call('ZADD', prefix .. ':calls', now_ms, call_id)
    if create.kind ~= 'dialin' then
      redis.call('ZADD', prefix .. ':open', now_ms, call_id)
    end
  end

  local state, room, kind, known_session = unpack(
    redis.call('HMGET', key, 'state', 'room', 'kind', 'sessionId'))
  local newly_known = false
  if session_id ~= '' and not known_session then
    redis.call('HSET', key, 'sessionId', session_id)
    redis.call('SET', prefix .. ':session:' .. session_id, call_id)
    known_session, newly_known = session_id, true
  end

  local moves = cjson.decode(args[5])
  local dest = moves[state]
  local ignored = dest == nil
  if not ignored then
    local fields = cjson.decode(args[9])
    if dest == 'stopped' and fields.reason == 'hangup' then
      -- Daily reports every end as a hang-up: keep the reason we asked for, or the transfer.
      local asked = redis.call('HGET', key, 'stopReason')
      if asked then
        fields.reason = asked
      elseif redis.call('HEXISTS', key, 'transferredTo') == 1 then
        fields.reason = 'transferred'
      end
    end
    for name, value in pairs(fields) do
      if string.sub(name, 1, 1) == '+' then
        redis.call('HINCRBY', key, string.sub(name, 2), value)
      elseif value == cjson.null then
        redis.call('HDEL', key, name)
      else
        redis.call('HSET', key, name, value)
      end
    end
    redis.call('HSET', key, 'state', dest, 'updatedAt', at)
  end

  local to = dest or state
  local seq = redis.call('INCR', prefix .. ':seq')
  local entry = {seq = seq, event = event, from = state, to = to, at = at, source = source}
  if ignored then entry.ignored = true end
  -- Daily's envelope id, so a call's history shows which delivery was recorded.
  if event_id ~= '' then entry.eventId = event_id end
  redis.call('RPUSH', history, encode(entry, data))

  publish({seq = seq, json = encode({
    seq = seq, callId = call_id, sessionId = nullable(known_session), room = nullable(room),
    kind = nullable(kind), event = event, from = state, to = to, at = at, source = source,
    ignored = ignored}, data)}, call_id)

  if FINAL[to] and not ignored then
    redis.call('EXPIRE', key, retention)
    redis.call('EXPIRE', history, retention)
    redis.call('ZREM', prefix .. ':live', call_id)
    redis.call('ZREM', prefix .. ':open', call_id)
    -- The listing index forgets calls whose records have expired: it cannot grow unbounded.
    redis.call('ZREMRANGEBYSCORE', prefix .. ':calls', '-inf',
               string.format('(%d', tonumber(now_ms) - retention * 1000))
    if known_session then
      redis.call('EXPIRE', prefix .. ':session:' .. known_session, retention)
    end
  end

  if event_id ~= '' then
    redis.call('SET', seen, '1', 'EX', dedupe_ttl)
  end
  if ignored then count('ignored') else count('applied', to ~= state and to or nil) end
  if newly_known then
    drain(call_id, known_session)
  end
  return {ignored and 'ignored' or 'applied', call_id, state, to, seq}
end

return apply({ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9],
              ARGV[10], ARGV[11], ARGV[12]})
