/*
 * cityops device guard: a Mosquitto 2.0 plugin (interface version 5) loaded before the
 * dynamic-security plugin. For a device (any username not starting with "cityops-") it refuses
 *   - a publish to any topic but city/<water|power|gas>/<its own username>/telemetry,
 *   - every subscription (shared ones included),
 *   - publishes beyond max_rate per second (a flood),
 * and for each refusal publishes a security event on city/security/devices/<username> (at most
 * one per device and reason per 10 s, with the count refused since) and logs it at notice
 * level. Everything it does not refuse is left to dynamic security (which checks the role), so
 * the guard can only narrow what a device may do. Mosquitto itself logs a refused publish only
 * at debug level, which at fleet rates would write a line per message.
 *
 * Options: plugin_opt_max_rate (default 50 publishes per second per device).
 * Build: gcc -O2 -shared -fPIC -o device_guard.so device_guard.c  (headers: mosquitto-dev)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define SERVICE_PREFIX "cityops-"
#define SLOTS 65536 /* devices tracked for the rate limit (open addressing, 64-bit hashes) */
#define PROBES 16
#define EVENT_GAP_S 10

enum reason { FOREIGN_TOPIC, SUBSCRIBE, FLOOD, REASONS };
static const char *REASON_NAMES[REASONS] = {"foreign_topic", "subscribe", "flood"};

struct slot {
	uint64_t key;
	time_t window;          /* the second being counted */
	uint32_t count;         /* publishes in that second */
	time_t last_event[REASONS];
	uint32_t refused[REASONS]; /* refusals since the last event */
};

static mosquitto_plugin_id_t *plugin_id;
static struct slot *slots;
static uint32_t max_rate = 50;

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for(; *s; s++){
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	}
	return h ? h : 1;
}

static struct slot *slot_of(const char *username)
{
	uint64_t key = hash(username);
	for(int i = 0; i < PROBES; i++){
		struct slot *s = &slots[(key + (uint64_t)i) % SLOTS];
		if(s->key == key) return s;
		if(s->key == 0){
			s->key = key;
			return s;
		}
	}
	return &slots[key % SLOTS]; /* table crowded: share a slot (counts err on the safe side) */
}

static void json_string(char *out, size_t n, const char *s)
{
	/* a topic or id as a JSON string body: quotes, backslashes and controls dropped */
	size_t j = 0;
	for(; s && *s && j + 1 < n; s++){
		unsigned char c = (unsigned char)*s;
		if(c >= 0x20 && c != '"' && c != '\\') out[j++] = (char)c;
	}
	out[j] = '\0';
}

static void report(struct mosquitto *client, const char *username, struct slot *s,
		enum reason why, const char *topic)
{
	time_t now = time(NULL);
	s->refused[why]++;
	if(now - s->last_event[why] < EVENT_GAP_S) return;
	char user[128], cid[128], addr[64], top[256], payload[1024], event_topic[200];
	json_string(user, sizeof user, username);
	json_string(cid, sizeof cid, mosquitto_client_id(client));
	json_string(addr, sizeof addr, mosquitto_client_address(client));
	json_string(top, sizeof top, topic);
	int len = snprintf(payload, sizeof payload,
			"{\"event\":\"device_refused\",\"reason\":\"%s\",\"username\":\"%s\","
			"\"client_id\":\"%s\",\"address\":\"%s\",\"topic\":\"%s\",\"refused\":%u,\"ts\":%lld}",
			REASON_NAMES[why], user, cid, addr, top, s->refused[why], (long long)now);
	snprintf(event_topic, sizeof event_topic, "city/security/devices/%s", user);
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "device guard: refused %s from %s (%s) at %s: %s",
			REASON_NAMES[why], user, cid, addr, top);
	mosquitto_broker_publish_copy(NULL, event_topic, len, payload, 1, false, NULL);
	s->last_event[why] = now;
	s->refused[why] = 0;
}

static bool own_telemetry(const char *topic, const char *username)
{
	static const char *utilities[] = {"water", "power", "gas"};
	if(strncmp(topic, "city/", 5) != 0) return false;
	const char *rest = topic + 5;
	size_t ulen = strlen(username);
	for(int i = 0; i < 3; i++){
		size_t n = strlen(utilities[i]);
		if(strncmp(rest, utilities[i], n) == 0 && rest[n] == '/'
				&& strncmp(rest + n + 1, username, ulen) == 0
				&& strcmp(rest + n + 1 + ulen, "/telemetry") == 0){
			return true;
		}
	}
	return false;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *username = mosquitto_client_username(ed->client);
	if(username == NULL || strncmp(username, SERVICE_PREFIX, strlen(SERVICE_PREFIX)) == 0){
		return MOSQ_ERR_PLUGIN_DEFER; /* services (and the broker itself): dynamic security */
	}
	if(ed->access == MOSQ_ACL_SUBSCRIBE){
		report(ed->client, username, slot_of(username), SUBSCRIBE, ed->topic);
		return MOSQ_ERR_ACL_DENIED;
	}
	if(ed->access != MOSQ_ACL_WRITE){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	struct slot *s = slot_of(username);
	if(!own_telemetry(ed->topic, username)){
		report(ed->client, username, s, FOREIGN_TOPIC, ed->topic);
		return MOSQ_ERR_ACL_DENIED;
	}
	time_t now = time(NULL);
	if(s->window != now){
		s->window = now;
		s->count = 0;
	}
	if(++s->count > max_rate){
		report(ed->client, username, s, FLOOD, ed->topic);
		return MOSQ_ERR_ACL_DENIED;
	}
	return MOSQ_ERR_PLUGIN_DEFER;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	for(int i = 0; i < opt_count; i++){
		if(strcmp(opts[i].key, "max_rate") == 0){
			long v = strtol(opts[i].value, NULL, 10);
			if(v < 1){
				mosquitto_log_printf(MOSQ_LOG_ERR, "device guard: max_rate must be >= 1");
				return MOSQ_ERR_INVAL;
			}
			max_rate = (uint32_t)v;
		}
	}
	slots = calloc(SLOTS, sizeof *slots);
	if(slots == NULL) return MOSQ_ERR_NOMEM;
	plugin_id = identifier;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "device guard: devices limited to %u publishes/s", max_rate);
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	free(slots);
	return MOSQ_ERR_SUCCESS;
}
