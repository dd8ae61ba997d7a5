-- Constants of the waiter queue's protocol, the same as the Rust side's (RELEASE_CHANNEL_PREFIX,
-- WAKE_CHANNEL_PREFIX, HEAD_CLAIM; a unit test checks they agree). Written here rather than
-- sent with every call: each argument costs the client its encoding and the server a Lua
-- string.
local RELEASE_CHANNEL_PREFIX = 'quorate:released:'
local WAKE_CHANNEL_PREFIX = 'quorate:wake:'
local HEAD_CLAIM_MS = 200
