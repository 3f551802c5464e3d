/**
 * @loom/mqtt — Loom's worker protocol over an MQTT broker, on the caller's mqtt.js client.
 * Workers announce migrations as retained QoS 1 messages (`mqttAnnouncer`) and the server
 * subscribes and registers them (`mqttAnnouncements`); the server dispatches steps
 * (`mqttDispatcher`) and asks for dry runs (`mqttDryRunner`), which workers receive with
 * `onDispatch` and `serveDryRun`. Requests carry their reply topic, correlation id and token
 * in the JSON body, so everything works on MQTT 3.1.1 and 5 alike. An announcement's token
 * names its sender (a worker or an operator, as core's `tokenIdentities` reads it) and Loom
 * holds it to that actor's role and ownership. Nothing here closes the client it is given.
 */
export { mqttAnnouncements, type AnnouncingLoom, type MqttAnnouncementsOptions, type InvalidAnnouncement } from './announcements'
export { mqttAnnouncer, type MqttAnnouncer, type MqttAnnouncerOptions, type AnnounceOptions } from './announcer'
export { mqttDispatcher, type MqttDispatcherOptions, type MqttStepDispatcher } from './dispatcher'
export { mqttDryRunner, type MqttDryRunner, type MqttDryRunnerOptions } from './dry-runner'
export { onDispatch, serveDryRun, type ReceiverOptions, type OnDispatchOptions, type ServeDryRunOptions } from './receivers'
export type { MqttSubscription } from './subscription'
export { DEFAULT_TOPIC_PREFIX, topicMatches } from './topics'
export {
  DEFAULT_MAX_PAYLOAD_BYTES,
  type MqttLogger,
  type TransportFields,
  type Reply,
  type ReplyBody,
  type WorkerTokenOption,
} from './wire'
