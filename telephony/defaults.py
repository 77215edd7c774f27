"""Every constant and default of the service, each with the reason for its value.

Modelled on rq's ``defaults.py``: one place to read before tuning anything. Values that an
operator may change are read from the environment by :mod:`telephony.config`; the rest are
fixed by Daily's API or by the data model.
"""

# --- Daily's REST API -------------------------------------------------------------------------

#: Daily's public API base; the sandbox replaces it in the demo and the tests.
DAILY_API_URL = "https://api.daily.co/v1"

#: Seconds to open a TCP/TLS connection to Daily. Short: a connect failure proves nothing was
#: sent, so it is always safe to retry quickly.
DAILY_CONNECT_TIMEOUT = 3.05

#: Seconds to wait for Daily's answer once the request is sent. A start that times out here is
#: *ambiguous* (the call may have been placed), so this is generous rather than tight.
DAILY_READ_TIMEOUT = 15.0

#: Connections kept per pooled ``requests.Session``: one worker process runs one job at a time,
#: the web process a handful of threads.
DAILY_POOL_SIZE = 10

#: Characters of a non-JSON error body (a proxy's HTML page) kept as the error's ``info``:
#: enough to recognise "502 Bad Gateway", short enough for one log line.
DAILY_ERROR_TEXT_MAX = 200

#: Daily's documented ceiling for starting PSTN/SIP calls: 5 starts in any 5 s window.
DIALOUT_LIMIT = "5/5s"

#: Seconds added to the dial-out window by our limiter, so network jitter between our clock
#: (Redis ``TIME``) and Daily's never puts six starts into one of *Daily's* 5 s windows.
DIALOUT_LIMIT_MARGIN = 0.25

# --- Dial-out option bounds (daily-api.md) ----------------------------------------------------

#: E.164 allows at most 15 digits after the ``+`` (country code included).
E164_MAX_DIGITS = 15
#: Daily's ``userId`` limit; a UUID call id (36) fits exactly.
USER_ID_MAX = 36
#: Daily's ``extension`` limit (digits dialled after connect).
EXTENSION_MAX = 20
#: Daily's ``waitBeforeExtensionDialSec`` range is 0..60.
WAIT_BEFORE_EXTENSION_MAX = 60
#: Daily's ``videoSettings`` bounds (SIP video): 1280x720 at up to 30 fps and 1000 kbps.
VIDEO_WIDTH_MAX = 1280
VIDEO_HEIGHT_MAX = 720
VIDEO_FPS_MAX = 30
VIDEO_BITRATE_MAX = 1000
#: Codecs Daily accepts, in its spelling (the first listed is used).
AUDIO_CODECS = ("OPUS", "G722", "PCMU", "PCMA")
VIDEO_CODECS = ("H264", "VP8")
#: DTMF: Daily's tone characters, at most 20 per request, each 50..2000 ms, and the methods
#: its client SDKs name (RFC 4733 events, SIP INFO, or Daily's choice).
DTMF_TONES = "0123456789ABCD*#"
DTMF_MAX_TONES = 20
DTMF_DURATION_MIN = 50
DTMF_DURATION_MAX = 2000
DTMF_METHODS = ("telephone-event", "sip-info", "auto")

#: Daily's room names are ``[A-Za-z0-9_-]``, at most 128 characters.
ROOM_NAME_MAX = 128

#: Longest ``sessionId`` accepted: Daily's are UUIDs (36); the slack tolerates other id forms
#: while keeping request bodies and Redis keys bounded.
SESSION_ID_MAX = 128

#: Longest ``displayName``: Daily documents no limit; 256 is far beyond any caller-ID name
#: (CNAM is 15 characters) and keeps webhooks and logs small.
DISPLAY_NAME_MAX = 256

#: Longest ``sipUri`` / SIP ``toEndPoint``: RFC 3261 sets no limit; 2 KiB leaves room for
#: generous ``X-`` headers in the query while refusing abuse.
SIP_URI_MAX = 2048

#: Deepest nesting accepted in free-form JSON (``metadata``, ``permissions``): bounds recursion
#: when validating and is far beyond any real use.
JSON_MAX_DEPTH = 32

#: The ids of dial-in sessions' records: this prefix and Daily's session id. A caller may not
#: choose an id that starts with it (any case), or a dial-out could take a dial-in's events.
DIALIN_ID_PREFIX = "dialin-"

#: Largest magnitude of an integer in free-form JSON: 2^53, the last one a double (Lua's
#: cjson, JavaScript, most JSON readers) holds exactly; beyond it values come back changed.
JSON_MAX_INT = 2**53

#: Upper bounds for our own timers; a day is far beyond any real call and keeps typos
#: (milliseconds for seconds) from parking a call for weeks.
RING_TIMEOUT_MAX = 600
MAX_DURATION_MAX = 86_400

# --- Webhooks ---------------------------------------------------------------------------------

#: Largest webhook body we read. Daily's events are well under 4 KiB; 64 KiB leaves room for
#: large ``sip_headers`` while refusing abuse before any HMAC work.
WEBHOOK_MAX_BYTES = 64 * 1024

#: Deepest nesting kept of an authentic webhook's payload, and the longest string: Daily's
#: payloads are flat, short strings. Anything deeper is replaced by a marker string, longer
#: strings are cut, invalid Unicode (a lone surrogate) is replaced by U+FFFD, and the event
#: records what was done (``data.telephonySafeForm``): an authentic webhook is always stored
#: and answered 200, and what is stored can always be read back (history, feed, pub/sub).
#: Seconds a signed webhook may be old (by the timestamp Daily signs) and still move a call.
#: Daily's exponential retries span about 15 minutes, so a genuine delivery is never much
#: older; an hour leaves room for slow retries and clock skew, and stays well inside the
#: de-duplication window (``TELEPHONY_DEDUPE_TTL``, which caps it), so a captured webhook
#: replayed later is either recognised as a duplicate or too old: it cannot revive an ended
#: session. An older (or a future, beyond ``WEBHOOK_CLOCK_SKEW``) one is answered 200 and
#: recorded on the feed alone, as ignored (``data.telephonyStale``).
WEBHOOK_MAX_AGE = 3600
WEBHOOK_CLOCK_SKEW = 300

WEBHOOK_MAX_DEPTH = 16
WEBHOOK_MAX_STRING = 4096

#: Largest body accepted on ``/v1``: ``metadata`` is free-form but not a file store.
API_MAX_BYTES = 256 * 1024

#: Seconds a client has to deliver a whole request body once its headers are in (the ASGI
#: front, :mod:`telephony.web.asgi`); then 408. Daily sends a few KiB at once: 5 s is
#: generous for any honest client and keeps a trickling one from holding anything long.
BODY_READ_TIMEOUT = 5.0

#: Threads per web process that run the Flask app (the API) once a body is in: the webhook
#: is answered on the event loop, so a few threads serve the API's modest traffic.
WEB_THREADS = 2

#: Seconds an envelope ``id`` is remembered for de-duplication: Daily's exponential retry
#: gives up after about 15 minutes, a day is comfortably beyond that.
DEDUPE_TTL = 86_400

#: Seconds a finished call's session index (``{p}:session:{id}`` → call id) is kept. Only a
#: webhook without the call's id needs it (a dial-out's carry ``user_id``; a dial-in's id is
#: its session's), and such late webhooks come within Daily's retries (about 15 min), the
#: stale-signature window (``WEBHOOK_MAX_AGE``, 1 h) or a replay of Daily's log after an
#: outage (the next webhook check): a day covers all three. Capped by the call's retention.
SESSION_INDEX_TTL = 24 * 3600

#: A known call's first history entries that de-duplication searches for a webhook's id
#: (the history keeps every id it recorded, so they need no key of their own); an event
#: recorded beyond them (a call with this many events is rare) is remembered under a
#: ``seen`` key instead, so no duplicate ever gets through. 100 short entries are searched
#: in microseconds; a usual call has 6 to 10.
DEDUPE_HISTORY_SCAN = 100

#: Seconds an event for an unknown session is held, waiting for the start response that will
#: tell us which call it belongs to.
PENDING_TTL = 3_600

#: Where the webhook receiver journals verified webhooks it cannot commit (Redis away),
#: relative to the working directory unless ``TELEPHONY_SPOOL_DIR`` says otherwise.
SPOOL_DIR = ".telephony-spool"

#: Bytes one process's journal may hold. A webhook is about 0.5-2 KB: 64 MiB keeps 30,000 or
#: more, several minutes of a large call center's busiest traffic, while a disk never fills
#: from it. Past it a webhook is answered 503 (and counted): Daily retries it.
SPOOL_MAX_BYTES = 64 * 1024 * 1024

#: Seconds between the spool's attempts to reach Redis again: starts short (an outage is
#: usually a restart of a second or two), doubles up to the cap.
SPOOL_RETRY_MIN = 0.1
SPOOL_RETRY_MAX = 2.0

# --- Redis layout and retention ----------------------------------------------------------------

#: Prefix of every key and channel, so the service can share a Redis with other programs.
KEY_PREFIX = "telephony"

#: Seconds a finished call (``stopped`` / ``error``) is kept: a week for support questions.
CALL_RETENTION = 7 * 86_400

#: Entries kept in the durable feed (approximate trim): a day of a busy call center's events.
FEED_MAXLEN = 1_000_000

#: Seconds an ``Idempotency-Key`` is remembered (24 h, as payment APIs do).
IDEMPOTENCY_TTL = 86_400

#: Seconds after which a replayed request may conclude that the first request with its
#: Idempotency-Key died between creating the call and queueing it (a few Redis round trips
#: normally separate the two), and queue the start itself.
STRANDED_AFTER = 5.0

#: Longest ``Idempotency-Key`` (printable ASCII, no spaces): 255 as Stripe allows, room for a
#: UUID or a hash with a namespace, while keeping the Redis key bounded.
IDEMPOTENCY_KEY_MAX = 255

# --- HTTP API ---------------------------------------------------------------------------------

#: Default and maximum page sizes for listings and the feed.
PAGE_DEFAULT = 50
PAGE_MAX = 500

#: Seconds a pub/sub subscription waits for a message before it looks whether it was closed
#: (or Ctrl-C was pressed): short enough to stop promptly, long enough to cost nothing.
SUBSCRIBE_POLL = 0.5

#: Seconds to wait for Redis to confirm a SUBSCRIBE: one round trip (well under 1 ms on a
#: healthy server); waiting for it is what makes "subscribe, then read the feed" gap-free.
SUBSCRIBE_CONFIRM_TIMEOUT = 5.0

# --- Workers ----------------------------------------------------------------------------------

#: Seconds RQ keeps a finished job's result: none. Nothing reads results (a job's effect is
#: on its call), and a kept result costs about 4.8 KB of stream per job plus its 1.5 KB hash
#: (``../shared/design.md``, "Memory per call"); with 0, RQ deletes a job when it succeeds.
JOB_RESULT_TTL = 0

#: Seconds RQ keeps a failed job (its hash, its error in the result stream, its place in the
#: failed registry): a week, for an operator to look at with RQ's tools. RQ's default (no
#: TTL on the result, a year on the hash) would keep every failure practically forever.
JOB_FAILURE_TTL = 7 * 24 * 3600

#: Queue every dial-out job goes through.
QUEUE_NAME = "telephony"

#: Attempts for a start that fails with a retryable error, including the first.
RETRY_MAX_ATTEMPTS = 8

#: Exponential backoff for retries: ``base * 2**(attempt-1)``, capped, with full jitter.
RETRY_BASE = 1.0
RETRY_CAP = 60.0

#: Seconds a start whose outcome is unknown waits for a webhook carrying its ``user_id``
#: before it is dialled again.
AMBIGUOUS_GRACE = 30.0

#: Live calls (dialing → answered) allowed at once across the cluster; 0 means no cap.
MAX_LIVE_CALLS = 0

#: SIP/PSTN legs allowed at once in one room, across the cluster; 0 means no limit. Daily's
#: ``max_sip_pstn_sessions_per_room`` is 5 unless raised for the domain (``../shared/
#: daily-api.md``): a sixth start is refused, so it waits here (``queued``) instead of being
#: sent. Set it to the room's real limit when Daily raised it.
ROOM_LEG_LIMIT = 5

#: Seconds a start waiting for a slot (a room leg or a live-call slot) sleeps, as a scheduled
#: job, before it looks again: calls last minutes, so checking every few seconds costs nothing
#: and loses little.
SLOT_RECHECK = 2.0

#: Seconds between the watchdog's looks at a ringing call that has a ``maxDurationSec``: its
#: answer arrives as a webhook in the web process, which schedules nothing, so the watchdog
#: looks for it. One second matches the precision of Daily's (whole-second) answer time.
ANSWER_RECHECK = 1.0

#: Seconds the pool gives what a dead child left behind in its process group to stop after
#: SIGTERM (a scheduler's loop looks every second, then releases its lock and exits).
WORKER_LEFTOVER_GRACE = 3.0

#: How the worker side (workers, RQ's scheduler, the periodic work) rides out a Redis outage:
#: each command is retried with exponential backoff (0.1 s doubling, capped at 2 s) up to 20
#: times, about 33 s in all. Measured (``../shared/design.md``, "RQ after a Redis restart"):
#: with redis-py's default for ``from_url`` (no retries) a 2 s restart killed the scheduler and
#: 5-13 workers; with this budget none died through 2 s and 10 s outages. The web tier and the
#: CLI do not retry: they answer 503 at once, and the caller decides.
WORKER_REDIS_RETRIES = 20
WORKER_REDIS_BACKOFF_BASE = 0.1
WORKER_REDIS_BACKOFF_CAP = 2.0

#: Seconds between the scheduler's passes over the scheduled jobs (RQ's default): a timer,
#: retry or pacing wait runs at most about this late, and each pass is a few Redis commands.
SCHEDULER_INTERVAL = 1

#: Seconds the scheduler waits for any one Redis reply: its commands take milliseconds, and
#: a connection a restart left half-open must cost one tick, not the scheduler.
SCHEDULER_SOCKET_TIMEOUT = 5.0

#: Seconds a job may sit in RQ's intermediate queue (taken by a worker, never started) before
#: the scheduler puts it back on the queue. A worker marks its job started in the round trip
#: after taking it (milliseconds); 5 s is far beyond that even on a loaded machine, and far
#: below RQ's own minute-or-more (which fails the job instead).
RESCUE_AFTER = 5.0

#: Seconds a worker's command channel (RQ's pub/sub thread) reads before it looks whether it
#: must stop: bounds how long a warm shutdown waits for it (RQ's 60 s made every idle worker
#: outlive the pool's shutdown deadline). A read is a socket timeout, not a Redis command.
WORKER_PUBSUB_READ = 1.0

#: The ``retryType`` ``telephony register-webhook`` asks Daily for. ``exponential``: a delivery
#: that fails (the web tier restarting, a network blip) is retried up to 5 times over about
#: 15 minutes, so nothing is lost to a short outage; out-of-order arrival is handled by the
#: forward-only machine. Daily's default ``circuit-breaker`` drops every message from the
#: third failure until the webhook is re-activated (the health check does that within
#: ``TELEPHONY_WEBHOOK_CHECK_INTERVAL``): survivable, but it loses what was sent meanwhile.
WEBHOOK_RETRY_TYPE = "exponential"

#: Entries per page, and pages at most per replay, read from Daily's webhook log: a replay
#: after a long outage reads at most 20,000 entries (hours of a busy call center); the next
#: one goes on from there.
RECONCILE_LOG_PAGE = 1000
RECONCILE_LOG_PAGES = 20

#: Seconds a live call may go without any event before it is reconciled (``GET /presence``,
#: once per check for every such call at once). An answered call is normally silent until it
#: ends, so this is not an alarm, only how soon a lost final webhook is noticed: 90 s keeps a
#: dropped hang-up from billing for more than about two minutes (plus two checks to confirm
#: the leg is gone), and no quiet call is looked at more often than the checks run.
RECONCILE_AFTER = 90.0

#: Seconds Daily's presence may trail a leg joining or leaving ("up to about 15 s"), plus a
#: margin: a leg counts as gone only once it has been absent from presence for this long, on
#: two checks at least this far apart, so presence's lag never ends a live call.
PRESENCE_LAG = 20.0

#: Seconds between checks of Daily's webhook (``GET /webhooks``, once across every pool): a
#: webhook the circuit breaker marked ``FAILED`` is re-activated within this. Daily stops
#: sending until then, so short; one small API request per check.
WEBHOOK_CHECK_INTERVAL = 30.0

#: Seconds between sweeps of the open dial-outs (run once across every pool): a call whose
#: watchdog job is gone (lost with a Redis that restarted without its last writes, deleted by
#: hand) or a queued call with no start job is taken up again within this. Each sweep reads
#: two short hashes per open call, pipelined.
SWEEP_INTERVAL = 30.0

#: Open dial-outs read per pipelined batch in a sweep: bounds one round trip's size.
SWEEP_BATCH = 500

#: Seconds the periodic work's lock lives unless its holder renews it (every tick): another
#: pool takes the periodic work over this long after the holder's pool dies.
PERIODIC_LOCK_TTL = 10

# --- Sandbox (the Daily stand-in) --------------------------------------------------------------

#: Port ``telephony sandbox`` listens on: next to the service's, clear of common dev ports.
SANDBOX_PORT = 8790

#: API key the sandbox accepts when none is configured: obviously not a real Daily key.
SANDBOX_API_KEY = "sandbox"

#: Seconds the sandbox waits for the 200 to its webhook test request. Daily says "a few
#: seconds"; 3 s is the short end, so a receiver that passes here passes at Daily.
SANDBOX_TEST_REQUEST_TIMEOUT = 3.0

#: Seconds a webhook delivery may take before it counts as failed ("slow" in Daily's circuit
#: breaker); Daily documents no figure, 5 s is a common webhook ceiling.
SANDBOX_DELIVERY_TIMEOUT = 5.0

#: Shortest time the sandbox holds a never-answered start (the ``hang`` outcome) open,
#: whatever the time scale: at a tiny scale it must still outlast a client's connect and
#: send, or it would look like the ``drop`` outcome instead of a request left hanging.
SANDBOX_HANG_MIN = 1.0

#: Seconds the sandbox's room presence trails a leg joining or leaving (at time scale 1):
#: Daily says its presence can lag by up to about 15 s, so the service must cope with that.
SANDBOX_PRESENCE_LAG = 15.0

#: SIP/PSTN legs the sandbox lets live at once in one room (Daily's default
#: ``max_sip_pstn_sessions_per_room``); a start beyond it is refused with 400.
SANDBOX_ROOM_LEGS = 5

#: Consecutive failed deliveries that trip Daily's circuit breaker (webhook → ``FAILED``).
WEBHOOK_FAILURE_LIMIT = 3

#: Retries per message with ``retryType: exponential`` before Daily drops it.
WEBHOOK_EXPONENTIAL_RETRIES = 5

#: First backoff of the exponential retry, doubled each time: 30+60+120+240+480 s is about
#: the 15 minutes Daily documents (multiplied by the sandbox's time scale).
WEBHOOK_EXPONENTIAL_BASE = 30.0

#: Pauses before RQ re-runs a stop / DTMF / transfer job that hit a retryable Daily error
#: (5xx, 429, connection): a hang-up must not be lost to one bad second at Daily.
COMMAND_RETRY_INTERVALS = (1, 5, 15)

#: The command lane's queue: the main queue's name and this. Stop, DTMF and transfer jobs go
#: there, every worker listens to it first, and each pool runs one worker on it alone (the
#: reserve), so a person is hung up on at once even while every worker is busy starting a
#: campaign's calls (measured before: stop p95 21.6 s behind a 1,000-call burst).
COMMAND_QUEUE_SUFFIX = "-commands"
