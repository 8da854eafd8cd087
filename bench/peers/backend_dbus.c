/* D-Bus signals through dbus-broker, with libdbus-1: the publisher emits a signal per message
 * (topic as arg0, payload as a byte array), each subscriber has a match rule on arg0. The bus
 * handles a connection's messages in order, so a method call's reply (GetId) tells the publisher
 * the bus has routed everything it sent before. */
#include "backend.h"

#include <dbus/dbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH "/org/comet/Bench"
#define INTERFACE "org.comet.Bench"

struct pub {
        DBusConnection *c;
        char topic[128];
};

struct sub {
        DBusConnection *c;
};

static DBusConnection *connect_bus(const char *address) {
        DBusError error;
        dbus_error_init(&error);
        DBusConnection *c = dbus_connection_open_private(address, &error);
        if (!c || !dbus_bus_register(c, &error)) {
                fprintf(stderr, "dbus: %s\n", error.message ? error.message : "cannot connect");
                dbus_error_free(&error);
                if (c) {
                        dbus_connection_close(c);
                        dbus_connection_unref(c);
                }
                return NULL;
        }
        dbus_connection_set_exit_on_disconnect(c, FALSE);
        return c;
}

static struct pub *pub_open(const char *address, const char *topic, int low_latency) {
        (void)low_latency;
        struct pub *p = calloc(1, sizeof *p);
        if (!(p->c = connect_bus(address))) {
                free(p);
                return NULL;
        }
        strncpy(p->topic, topic, sizeof p->topic - 1);
        return p;
}

static int pub_ready(struct pub *p, int subscribers) {
        (void)p, (void)subscribers;
        return 0;
}

static int publish(struct pub *p, const void *data, size_t size) {
        DBusMessage *m = dbus_message_new_signal(PATH, INTERFACE, "Message");
        const char *topic = p->topic;
        const unsigned char *bytes = data;
        int ok = m && dbus_message_append_args(m, DBUS_TYPE_STRING, &topic, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &bytes, (int)size,
                                               DBUS_TYPE_INVALID) &&
                 dbus_connection_send(p->c, m, NULL);
        if (m)
                dbus_message_unref(m);
        /* libdbus queues without bound: write out as we go. */
        while (ok && dbus_connection_has_messages_to_send(p->c) && dbus_connection_get_outgoing_size(p->c) > (1 << 20))
                dbus_connection_read_write(p->c, 100);
        return ok ? 0 : -1;
}

static int pub_kick(struct pub *p) {
        dbus_connection_flush(p->c);
        return 0;
}

static int pub_flush(struct pub *p) {
        DBusError error;
        dbus_error_init(&error);
        DBusMessage *call = dbus_message_new_method_call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId");
        DBusMessage *reply = call ? dbus_connection_send_with_reply_and_block(p->c, call, 120000, &error) : NULL;
        if (call)
                dbus_message_unref(call);
        if (reply)
                dbus_message_unref(reply);
        dbus_error_free(&error);
        return reply ? 0 : -1;
}

static void pub_close(struct pub *p) {
        dbus_connection_close(p->c);
        dbus_connection_unref(p->c);
        free(p);
}

static struct sub *sub_open(const char *address, const char *topic) {
        struct sub *s = calloc(1, sizeof *s);
        if (!(s->c = connect_bus(address))) {
                free(s);
                return NULL;
        }
        char rule[256];
        snprintf(rule, sizeof rule, "type='signal',interface='%s',member='Message',arg0='%s'", INTERFACE, topic);
        DBusError error;
        dbus_error_init(&error);
        dbus_bus_add_match(s->c, rule, &error); /* blocking: the rule is in place when it returns */
        if (dbus_error_is_set(&error)) {
                dbus_error_free(&error);
                dbus_connection_close(s->c);
                dbus_connection_unref(s->c);
                free(s);
                return NULL;
        }
        return s;
}

static int drain(struct sub *s, message_fn fn, void *ctx) {
        int n = 0;
        DBusMessage *m;
        while ((m = dbus_connection_pop_message(s->c))) {
                const char *topic;
                const unsigned char *bytes;
                int size;
                if (dbus_message_is_signal(m, INTERFACE, "Message") &&
                    dbus_message_get_args(m, NULL, DBUS_TYPE_STRING, &topic, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &bytes, &size,
                                          DBUS_TYPE_INVALID)) {
                        fn(ctx, bytes, (size_t)size);
                        n++;
                }
                dbus_message_unref(m);
        }
        return n;
}

static int sub_next(struct sub *s, int timeout_ms, message_fn fn, void *ctx) {
        int n = drain(s, fn, ctx);
        if (n > 0)
                return n;
        if (!dbus_connection_read_write(s->c, timeout_ms))
                return -1;
        n = drain(s, fn, ctx);
        if (n == 0 && !dbus_connection_get_is_connected(s->c))
                return -1;
        return n;
}

static void sub_close(struct sub *s) {
        dbus_connection_close(s->c);
        dbus_connection_unref(s->c);
        free(s);
}

const struct backend dbus_backend = {"dbus", pub_open, pub_ready, publish, pub_kick, pub_flush, pub_close,
                                     sub_open, sub_next, sub_close};
