--[[
Apply one event to one call, atomically: the commit point of every state change.

In one round trip: de-duplicate by envelope id, resolve the call (by id, else by session),
compare-and-set the state against the moves the state machine allows, record history, append
to the durable feed with the next global seq, publish, and apply any events that were held for
the session until its call became known. Key names mirror telephony/keys.py.

KEYS (the keys known before the call is resolved): 1 {p}:seq, 2 {p}:feed, 3 {p}:metrics,
4 {p}:calls, 5 {p}:open, 6 {p}:live, 7 RQ's scheduled registry of the main queue. The call's own keys ({p}:call:, {p}:history:,
{p}:session:, {p}:pending:, {p}:seen:) and its room's legs ({p}:legs:) are built from the
prefix: a call may be known only by its session until this script resolves it.

ARGV[1]: the change, one JSON object with named fields (telephony/store.py builds it):
  v           format version (1)
  prefix      key prefix
  callId      call id ('' = look up by sessionId)
  sessionId   Daily's session ('' = none)
  event       event name recorded
  eventId     Daily's envelope id ('' = no de-duplication)
  moves       {from state: to state} the trigger allows
  at          ISO time recorded
  source      who reported it (api, worker, webhook, log, presence, service)
  data        the event's data as raw JSON text (spliced in, never re-encoded)
  fields      call fields set when the move applies (strings and integers; '+name'
              increments; null deletes)
  create      a new call's fields, or absent
  mode        'new' (the call must not exist yet), 'upsert' (create when missing) or ''
  retention, feedMaxlen, dedupeTtl, pendingTtl, nowMs   limits and the clock
  feed        the feed entry's data without what the entry carries: {d = JSON text,
              s = {session_id, user_id, room: values taken out}, t = 't'|'T'|nil}, or absent;
              used only when every value taken out equals the entry's own
  atMs        'at' in milliseconds, when 'at' is exactly that time's ISO form, or absent
  sessionTtl  seconds a finished call's session index is kept (capped by retention)
  dedupeScan  how many of a call's first history entries de-duplication searches
  jobPrefix   RQ's job hash prefix ('rq:job:'): a call that ends deletes its watchdog job

Events held for a session not yet known are stored as the same object without the limits
(version 1); a held event of the earlier, positional format is read as well.

Returns {status, call id, from, to, seq}; status: applied | ignored | duplicate | held | exists
| orphan.
]]

local change = cjson.decode(ARGV[1])
local prefix = change.prefix
local retention = tonumber(change.retention)
local maxlen = change.feedMaxlen
local dedupe_ttl = tonumber(change.dedupeTtl)
local pending_ttl = tonumber(change.pendingTtl)
local now_ms = change.nowMs
local job_prefix = change.jobPrefix
local dedupe_scan = tonumber(change.dedupeScan) or 0
local SEQ, FEED, METRICS, CALLS, OPEN, LIVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local SCHEDULED = KEYS[7]

local FINAL = {stopped = true, error = true}
local HELD_FIELDS = {'sessionId', 'event', 'eventId', 'moves', 'at', 'source', 'data', 'fields',
                     'create', 'mode', 'feed', 'atMs'}

local function encode(tbl, data)
  -- Splice the raw data JSON in, so cjson never re-encodes it ([] would become {}).
  local base = cjson.encode(tbl)
  return string.sub(base, 1, -2) .. ',"data":' .. data .. '}'
end

local function nullable(value)
  if value == false or value == nil or value == '' then return cjson.null end
  return value
end

local function text(value)
  if value == false or value == nil or value == cjson.null then return '' end
  return value
end

-- The Daily domain the service's webhooks come from: the first one seen, kept for good
-- ({p}:domain), so an entry can leave out a domain_id equal to it (and one of another domain
-- keeps its own).
local function known_domain(value)
  local key = prefix .. ':domain'
  local domain = redis.call('GET', key)
  if domain then return domain end
  redis.call('SET', key, value)
  return value
end

-- What feed and history entries can leave out of an event's data, with the mark that says
-- so (telephony/store.py puts the value back on read from the entry, the call or the domain).
local CARRIED = {{'session_id', 's'}, {'user_id', 'u'}, {'room', 'r'}, {'domain_id', 'd'},
                 {'sessionId', 'S'}, {'destination', 'D'}}

-- The JSON object text d with the "name":value pairs put back in front.
local function put_back(d, pairs)
  if #pairs == 0 then return d end
  local rest = string.sub(d, 2)
  return '{' .. table.concat(pairs, ',') .. (rest == '}' and '}' or ',' .. rest)
end

-- The event's data as the feed and the history keep it, with their marks: feed.d (built by
-- store.py's _feed_form) is the data without the fields in feed.s; each is left out where
-- its value equals what the entry carries (the feed entry: session, call id, room; the
-- history: those and the call's destination; both: the known domain), and put back
-- otherwise. feed.t marks a timestamp the entry's time gives back. No feed: the data whole.
local function compact(e, data, feed, destination)
  if not feed then return data, '', data, '' end
  local taken = feed.s or {}
  local feed_back, history_back, feed_marks, history_marks = {}, {}, '', ''
  for _, carried in ipairs(CARRIED) do
    local name, mark = carried[1], carried[2]
    local value = taken[name]
    if value ~= nil then
      local own
      if name == 'domain_id' then own = known_domain(value)
      elseif name == 'destination' then own = destination
      elseif name == 'user_id' then own = e.callId
      elseif name == 'room' then own = e.room
      else own = e.sessionId end
      local pair = cjson.encode(name) .. ':' .. cjson.encode(value)
      if value == own then
        history_marks = history_marks .. mark
        if name == 'destination' then
          table.insert(feed_back, pair)  -- the feed entry does not carry it
        else
          feed_marks = feed_marks .. mark
        end
      else
        table.insert(feed_back, pair)
        table.insert(history_back, pair)
      end
    end
  end
  local stamp = feed.t or ''
  return put_back(feed.d, feed_back), feed_marks .. stamp,
         put_back(feed.d, history_back), history_marks .. stamp
end

-- The feed entry: fixed fields (a stream stores the names once when every entry repeats
-- them), the time in ms when it has a ms form, the data compact (d, x).
local function feed_entry(e, d, x, at_ms)
  return {'c', text(e.callId), 's', text(e.sessionId), 'r', text(e.room), 'k', text(e.kind),
          'e', e.event, 'f', text(e.from), 't', text(e.to), 'a', at_ms or e.at,
          'o', e.source, 'i', e.ignored and '1' or '0', 'x', x, 'd', d}
end

-- A history entry: [Daily's envelope id or '', seq, event, '' (from: the entry before's
-- to, or 'new'), to, at (ms, or the text when it has no ms form), source, ignored (0/1),
-- marks, data], the data compact (d, x: what the call holds is put back on read). The id
-- comes first: de-duplication looks for it there.
local function history_entry(e, d, x, at_ms, event_id)
  local base = cjson.encode({event_id, e.seq, e.event, '', e.to, tonumber(at_ms) or e.at,
                             e.source, e.ignored and 1 or 0, x})
  return string.sub(base, 1, -2) .. ',' .. d .. ']'
end

-- Onto the feed and both channels (the call's own when it is one: owner ~= '').
local function publish(e, data, d, x, at_ms, owner)
  local json = encode(e, data)
  redis.call('XADD', FEED, 'MAXLEN', '~', maxlen, e.seq .. '-0',
             unpack(feed_entry(e, d, x, at_ms)))
  redis.call('PUBLISH', prefix .. ':events', json)
  if owner ~= '' then
    redis.call('PUBLISH', prefix .. ':calls:' .. owner, json)
  end
end

local function count(status, to)
  redis.call('HINCRBY', METRICS, 'events_' .. status, 1)
  if to then redis.call('HINCRBY', METRICS, 'entered_' .. to, 1) end
end

local apply

local function held_form(args)
  local kept = {v = 1}
  for _, name in ipairs(HELD_FIELDS) do kept[name] = args[name] end
  return cjson.encode(kept)
end

local function from_held(item)
  local args = cjson.decode(item)
  if args.v == nil then
    -- The earlier, positional format: {call id, session, event, event id, moves JSON, at,
    -- source, data, fields JSON, create JSON or '', mode}.
    args = {sessionId = args[2], event = args[3], eventId = args[4],
            moves = cjson.decode(args[5]), at = args[6], source = args[7], data = args[8],
            fields = cjson.decode(args[9]),
            create = args[10] ~= '' and cjson.decode(args[10]) or nil, mode = args[11]}
  end
  return args
end

local function drain(call_id, session_id)
  local held = prefix .. ':pending:' .. session_id
  local items = redis.call('LRANGE', held, 0, -1)
  redis.call('DEL', held)
  for _, item in ipairs(items) do
    local args = from_held(item)
    args.callId = call_id
    args.drained = true -- its id was remembered when it was held
    apply(args)
  end
end

apply = function(args)
  local call_id, session_id = args.callId or '', args.sessionId or ''
  local event, event_id = args.event, args.eventId or ''
  local at, source, data = args.at, args.source, args.data

  -- Every envelope id is de-duplicated, whatever becomes of it (applied, held, orphaned):
  -- checked first, remembered last, so a script that fails half-way (Redis does not roll
  -- back) does not make Daily's retry of this event look like a duplicate. A held event that
  -- is drained was checked when it was held (and is remembered again).
  --
  -- A known call's history already holds the ids it recorded (first in each entry), so
  -- they cost no key of their own: the first dedupeScan entries are searched, and only an
  -- event recorded beyond them (a very long call) or not on a call (held, orphaned) is
  -- remembered under {p}:seen:{id}, for dedupeTtl.
  local seen = prefix .. ':seen:' .. event_id
  local function remember()
    if event_id ~= '' then
      redis.call('SET', seen, '1', 'EX', dedupe_ttl)
    end
  end
  local function duplicate()
    count('duplicate')
    return {'duplicate', call_id, '', '', 0}
  end
  local checking = event_id ~= '' and not args.drained
  if checking and redis.call('EXISTS', seen) == 1 then
    return duplicate()
  end

  if call_id == '' and session_id ~= '' then
    call_id = redis.call('GET', prefix .. ':session:' .. session_id) or ''
  end
  local key = prefix .. ':call:' .. call_id
  local exists = call_id ~= '' and redis.call('EXISTS', key) == 1

  if args.mode == 'new' and exists then
    count('exists')
    return {'exists', call_id, '', '', 0}
  end
  if not exists and args.create == nil then
    if session_id ~= '' then
      local held = prefix .. ':pending:' .. session_id
      redis.call('RPUSH', held, held_form(args))
      redis.call('EXPIRE', held, pending_ttl)
      count('held')
      remember()
      return {'held', call_id, '', '', 0}
    end
    -- No call and nothing to match it by: keep it on the feed, owned by no call.
    local seq = redis.call('INCR', SEQ)
    local e = {seq = seq, callId = nullable(call_id), sessionId = cjson.null,
               room = cjson.null, kind = cjson.null, event = event, from = cjson.null,
               to = cjson.null, at = at, source = source, ignored = true}
    local d, x = compact(e, data, args.feed, nil)
    publish(e, data, d, x, args.atMs, '')
    count('orphan')
    remember()
    return {'orphan', call_id, '', '', seq}
  end

  local history = prefix .. ':history:' .. call_id
  if checking and exists then
    local needle = '[' .. cjson.encode(event_id) .. ','
    for _, item in ipairs(redis.call('LRANGE', history, 0, dedupe_scan - 1)) do
      if string.sub(item, 1, #needle) == needle then return duplicate() end
    end
  end
  if not exists then
    for name, value in pairs(args.create) do
      redis.call('HSET', key, name, value)
    end
    -- No 'id' field: the key holds it (telephony/store.py puts it back on read).
    redis.call('HSET', key, 'state', 'new', 'createdAt', at, 'updatedAt', at)
    redis.call('ZADD', CALLS, now_ms, call_id)
    redis.call('ZADD', OPEN, now_ms, call_id) -- dial-ins too: their ceiling is watched
  end

  local state, room, kind, known_session, destination = unpack(
    redis.call('HMGET', key, 'state', 'room', 'kind', 'sessionId', 'destination'))
  local newly_known = false
  if session_id ~= '' and not known_session then
    redis.call('HSET', key, 'sessionId', session_id)
    redis.call('SET', prefix .. ':session:' .. session_id, call_id)
    known_session, newly_known = session_id, true
  end

  local dest = args.moves[state]
  local ignored = dest == nil
  if not ignored then
    local fields = args.fields or {}
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
    if state == 'queued' and dest ~= 'queued' then
      -- Bookkeeping true only while a call is queued (telephony/record.py): stale now.
      redis.call('HDEL', key, 'waitingFor', 'nextAttemptAt')
    end
  end

  local to = dest or state
  local seq = redis.call('INCR', SEQ)
  local e = {seq = seq, callId = call_id, sessionId = nullable(known_session),
             room = nullable(room), kind = nullable(kind), event = event, from = state, to = to,
             at = at, source = source, ignored = ignored}
  local d, x, hd, hx = compact(e, data, args.feed, destination)
  -- Daily's envelope id, so a call's history shows which delivery was recorded.
  local recorded = redis.call('RPUSH', history, history_entry(e, hd, hx, args.atMs, event_id))
  publish(e, data, d, x, args.atMs, call_id)

  if FINAL[to] and not ignored then
    redis.call('EXPIRE', key, retention)
    redis.call('EXPIRE', history, retention)
    redis.call('ZREM', LIVE, call_id)
    if room then redis.call('ZREM', prefix .. ':legs:' .. room, call_id) end
    -- Its watchdog has nothing left to watch: deleted now, not kept until it would have run
    -- (a running one finds the call final; RQ deletes a job when it finishes).
    local watch = redis.call('HGET', key, 'watchJob')
    if watch and job_prefix then
      redis.call('ZREM', SCHEDULED, watch)
      redis.call('DEL', job_prefix .. watch)
    end
    -- The workers' bookkeeping (record.py's fields not shown, and the stop asked for, which
    -- 'reason' now says) means nothing once it ended.
    redis.call('HDEL', key, 'watchDue', 'watchJob', 'startJob', 'dialingSince',
               'stopRequested', 'stopReason')
    redis.call('ZREM', OPEN, call_id)
    -- The listing index forgets calls whose records have expired: it cannot grow unbounded.
    redis.call('ZREMRANGEBYSCORE', CALLS, '-inf',
               string.format('(%d', tonumber(now_ms) - retention * 1000))
    if known_session then
      -- Only webhooks without the call's id need it, and they come within Daily's retries
      -- or a log replay after an outage: sessionTtl, not the record's whole retention.
      redis.call('EXPIRE', prefix .. ':session:' .. known_session,
                 math.min(retention, tonumber(change.sessionTtl) or retention))
    end
  end

  if recorded > dedupe_scan then remember() end  -- beyond what the history search covers
  if ignored then count('ignored') else count('applied', to ~= state and to or nil) end
  if newly_known then
    drain(call_id, known_session)
  end
  return {ignored and 'ignored' or 'applied', call_id, state, to, seq}
end

return apply(change)
