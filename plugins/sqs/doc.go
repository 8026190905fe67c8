// Command evorelay-sink-sqs is the SQS sink: it sends every event an
// instance subscribed to as a message on an Amazon SQS FIFO queue (or on
// any server that speaks SQS's query protocol, such as goaws). It is a
// plugin process the evorelay host launches; it is not meant to be run by
// hand, and it knows nothing of the host beyond the sdk.
//
// # Instance settings
//
// POST /sqs/set/{instance} takes Evolution API's shape:
//
//	{"enabled": true, "events": ["MESSAGES_UPSERT", "CONNECTION_UPDATE"]}
//
// with no events meaning every event. The read-only fields Evolution API
// adds to its own find responses (id, instanceId, createdAt, updatedAt)
// are dropped; any other field is refused by name. Where the messages go
// is the process's choice, below, not the instance's.
//
// Enabling the sink for an instance checks that every queue name it leads
// to is one SQS accepts (at most 80 characters of A-Z, a-z, 0-9, '-' and
// '_' before ".fifo"; a field error on "instance" otherwise) and creates
// the queues, so a consumer can subscribe before the first event. A queue
// that is missing later (deleted, or never created) is created on first use.
//
// # Process settings
//
//	EVORELAY_SQS_REGION             AWS region; required for the sink to be ready
//	EVORELAY_SQS_ENDPOINT           endpoint override, e.g. http://127.0.0.1:4100 for goaws
//	EVORELAY_SQS_ACCESS_KEY_ID      static credentials, with EVORELAY_SQS_SECRET_ACCESS_KEY
//	EVORELAY_SQS_SECRET_ACCESS_KEY  (and optionally EVORELAY_SQS_SESSION_TOKEN); without
//	                                them the AWS SDK's default chain is used (AWS_PROFILE,
//	                                shared files, web identity, ECS/EC2 roles; the host
//	                                passes no plugin AWS_ACCESS_KEY_ID and its kin)
//	EVORELAY_SQS_ACCOUNT_ID         12-digit owner of the queues, passed to GetQueueUrl
//	EVORELAY_SQS_QUEUE_URL_PREFIX   build queue URLs as <prefix>/<name> instead of
//	                                looking them up, e.g. https://sqs.us-east-1.amazonaws.com/123456789012
//	EVORELAY_SQS_GLOBAL             true: queues are shared by every instance (below)
//	EVORELAY_SQS_GLOBAL_PREFIX      global queue names are <prefix>_<event>.fifo
//	EVORELAY_SQS_GLOBAL_QUEUE       global: one queue for every event instead (".fifo" added)
//	EVORELAY_SQS_GROUP_BY           instance (default) or chat: what MessageGroupId orders by
//	EVORELAY_SQS_MESSAGE_RETENTION  MessageRetentionPeriod of the queues the sink creates,
//	                                1m to 336h (SQS's default: 4 days); existing queues keep theirs
//
// A bad value stops the plugin's Open with an error naming the variable;
// an unknown EVORELAY_SQS_* variable is logged as a warning. Without a
// region the plugin loads but is not ready, and enabling it for an
// instance is refused with a message naming EVORELAY_SQS_REGION.
//
// # Queues and messages
//
// Each event goes to the FIFO queue <instance>_<event>.fifo, the event
// constant in lower case: inst_messages_upsert.fifo,
// inst_group_participants_update.fifo. With EVORELAY_SQS_GLOBAL the
// instance part is EVORELAY_SQS_GLOBAL_PREFIX, or every event goes to
// EVORELAY_SQS_GLOBAL_QUEUE; the host still delivers only the events each
// instance's settings subscribe to. Queues are created with FifoQueue=true
// and ContentBasedDeduplication=false.
//
// The body is the envelope as JSON: {event, instance, data, date_time,
// sender, server_url, apikey}, event written as EVORELAY_NAMING says
// (MESSAGES_UPSERT or messages.upsert), data as the engine sent it, and
// sender, server_url and apikey null when the engine sent none. Every
// message carries the String attributes event (written the same way) and
// instance. MessageDeduplicationId is the delivery id, the same on every
// retry, so SQS drops a retried duplicate within its 5-minute window.
// MessageGroupId is the instance, so each instance's events are read in
// order; with EVORELAY_SQS_GROUP_BY=chat it is the chat (data.key.remoteJid,
// else data.remoteJid, as for messages.update) when the event has one, so
// chats are read in parallel and each chat's events in order. An id SQS would
// refuse (over 128 characters, or not printable ASCII) is replaced by its
// hex SHA-256.
//
// # Sending and outcomes
//
// A batch is sent with SendMessageBatch, queue by queue: messages for one
// queue in order, at most 10 and 256 KiB a call; different queues in
// parallel. Each delivery is acknowledged by its own entry's result: sent
// is delivered; a failed entry with SenderFault is dead-lettered with
// SQS's code and message, any other failed entry is retried. An error for
// the whole call retries every message in it (a missing queue is created
// and the call made once more first). A message over SQS's 256 KiB (body
// and attributes) is dead-lettered with a reason saying so; it is never
// truncated. An envelope that is not JSON is dead-lettered too.
//
// An event the delivery's settings do not subscribe to (the settings
// changed while it was on its way) is acknowledged without being sent,
// and logged.
package main
