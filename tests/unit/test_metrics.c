/*
 * test_metrics.c - the Prometheus registry renders valid 0.0.4 text: HELP/TYPE lines,
 * labelled series, escaped label values, cumulative histogram buckets, and collect
 * callbacks that run at scrape time.
 */
#include "testutil.h"

#include "obs/metrics.h"

#include <string.h>

static void collect(bt_metrics *reg, void *ud)
{
    (void)reg;
    bt_metric *g = ud;
    bt_metric_reset(g);
    bt_metric_set(g, 7, "pending");
}

static void test_render(void **state)
{
    (void)state;
    bt_metrics *reg = bt_metrics_new();
    bt_metric *c =
        bt_metrics_counter(reg, "api_request_rate", "HTTP requests served", "route,method,status");
    bt_metric_inc(c, 1, "/api/tasks", "GET", "200");
    bt_metric_inc(c, 2, "/api/tasks", "GET", "200");
    bt_metric_inc(c, 1, "/x\"y\\z\n", "POST", "404");
    bt_metric_inc(c, -5, "/api/tasks", "GET", "200"); /* counters never go down */
    assert_true(bt_metric_value(c, "/api/tasks", "GET", "200") == 3);
    assert_ptr_equal(bt_metrics_counter(reg, "api_request_rate", "", "route,method,status"), c);
    assert_null(bt_metrics_gauge(reg, "api_request_rate", "", NULL)); /* type clash */

    bt_metric *g = bt_metrics_gauge(reg, "queue_depth", "Tasks by status", "status");
    bt_metric_set(g, 99, "stale");
    bt_metrics_on_collect(reg, collect, g);

    const double b[] = {0.001, 0.01, 0.1};
    bt_metric *h =
        bt_metrics_histogram(reg, "store_latency_seconds", "Store op latency", "op", b, 3);
    bt_metric_observe(h, 0.0005, "claim");
    bt_metric_observe(h, 0.05, "claim");
    bt_metric_observe(h, 5, "claim");

    bt_strbuf out = BT_STRBUF_INIT;
    bt_metrics_render(reg, &out);
    const char *t = out.buf;
    assert_non_null(strstr(t, "# HELP api_request_rate HTTP requests served\n"
                              "# TYPE api_request_rate counter\n"));
    assert_non_null(
        strstr(t, "api_request_rate{route=\"/api/tasks\",method=\"GET\",status=\"200\"} 3\n"));
    assert_non_null(strstr(t, "route=\"/x\\\"y\\\\z\\n\""));
    assert_non_null(strstr(t, "queue_depth{status=\"pending\"} 7\n"));
    assert_null(strstr(t, "stale")); /* reset by the collector */
    assert_non_null(strstr(t, "store_latency_seconds_bucket{op=\"claim\",le=\"0.001\"} 1\n"));
    assert_non_null(strstr(t, "store_latency_seconds_bucket{op=\"claim\",le=\"0.01\"} 1\n"));
    assert_non_null(strstr(t, "store_latency_seconds_bucket{op=\"claim\",le=\"0.1\"} 2\n"));
    assert_non_null(strstr(t, "store_latency_seconds_bucket{op=\"claim\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(t, "store_latency_seconds_count{op=\"claim\"} 3\n"));
    bt_strbuf_release(&out);
    bt_metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
