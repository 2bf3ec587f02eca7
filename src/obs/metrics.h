/*
 * metrics.h - a Prometheus metrics registry rendered in text exposition format 0.0.4.
 *
 * Families (counter, gauge, histogram) are registered once with a name, help text and
 * label names; each distinct label-value tuple is a series created on first use.
 *
 *   bt_metric *reqs = bt_metrics_counter(reg, "api_request_rate",
 *                                        "HTTP requests served", "route,method,status");
 *   bt_metric_inc(reqs, 1, "/api/tasks", "GET", "200");
 *
 * Label values are passed as variadic const char* in the order the names were given.
 * Gauges whose value is cheap to compute at scrape time can instead be filled by a
 * collect callback (bt_metrics_on_collect) that runs just before rendering.
 *
 * The registry owns its families and series; bt_metric* handles stay valid until
 * bt_metrics_free. Single-threaded, like the rest of the loop.
 */
#ifndef BT_METRICS_H
#define BT_METRICS_H

#include "base/strbuf.h"

#include <stddef.h>

typedef struct bt_metrics bt_metrics;
typedef struct bt_metric bt_metric;

typedef void (*bt_metrics_collect_fn)(bt_metrics *reg, void *ud);

bt_metrics *bt_metrics_new(void);
void bt_metrics_free(bt_metrics *reg);

/* labels: comma-separated label names, or NULL/"" for none. Registering an existing
 * name returns the existing family when the type matches, NULL otherwise. */
bt_metric *bt_metrics_counter(bt_metrics *reg, const char *name, const char *help,
                              const char *labels);
bt_metric *bt_metrics_gauge(bt_metrics *reg, const char *name, const char *help,
                            const char *labels);
/* buckets: ascending upper bounds (the +Inf bucket is implicit); copied. */
bt_metric *bt_metrics_histogram(bt_metrics *reg, const char *name, const char *help,
                                const char *labels, const double *buckets, size_t nbuckets);

/* Counters only go up (a negative v is ignored). */
void bt_metric_inc(bt_metric *m, double v, ...);
void bt_metric_set(bt_metric *m, double v, ...);
void bt_metric_observe(bt_metric *m, double v, ...);
/* Current value of a counter/gauge series (0 if absent); for tests and /health. */
double bt_metric_value(bt_metric *m, ...);
/* Drop every series of a family (gauges recomputed from scratch at collect time). */
void bt_metric_reset(bt_metric *m);

void bt_metrics_on_collect(bt_metrics *reg, bt_metrics_collect_fn fn, void *ud);
/* Run the collect callbacks and append the exposition text. */
void bt_metrics_render(bt_metrics *reg, bt_strbuf *out);

#endif
