/*
 * metrics.c - Prometheus registry and text exposition (see metrics.h).
 *
 * Series are kept in a map keyed by the NUL-joined label values, per family; rendering
 * sorts families by registration order and series by key so scrapes are stable.
 */
#include "obs/metrics.h"

#include "base/map.h"
#include "base/mem.h"
#include "base/vec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } mtype;

typedef struct series {
    char **values; /* label values */
    double value;  /* counter/gauge */
    double sum;    /* histogram */
    unsigned long long count;
    unsigned long long *bucket_counts; /* non-cumulative per bucket; +Inf = count */
} series;

struct bt_metric {
    bt_metrics *reg;
    mtype type;
    char *name, *help;
    bt_strvec labels;
    double *buckets;
    size_t nbuckets;
    bt_map *series; /* key -> series* */
};

struct bt_metrics {
    BT_VEC(bt_metric *) families;
    BT_VEC(struct {
        bt_metrics_collect_fn fn;
        void *ud;
    })
    collectors;
};

static void series_free(void *p)
{
    series *s = p;
    if (!s)
        return;
    if (s->values)
        for (size_t i = 0; s->values[i]; i++)
            free(s->values[i]);
    free(s->values);
    free(s->bucket_counts);
    free(s);
}

bt_metrics *bt_metrics_new(void)
{
    return bt_xcalloc(1, sizeof(bt_metrics));
}

static void family_free(bt_metric *m)
{
    free(m->name);
    free(m->help);
    bt_strvec_clear(&m->labels);
    free(m->buckets);
    bt_map_free(m->series);
    free(m);
}

void bt_metrics_free(bt_metrics *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->families.len; i++)
        family_free(reg->families.items[i]);
    bt_vec_free(&reg->families);
    bt_vec_free(&reg->collectors);
    free(reg);
}

static bt_metric *add_family(bt_metrics *reg, mtype type, const char *name, const char *help,
                             const char *labels)
{
    for (size_t i = 0; i < reg->families.len; i++) {
        bt_metric *m = reg->families.items[i];
        if (strcmp(m->name, name) == 0)
            return m->type == type ? m : NULL;
    }
    bt_metric *m = bt_xcalloc(1, sizeof *m);
    m->reg = reg;
    m->type = type;
    m->name = bt_xstrdup(name);
    m->help = bt_xstrdup(help ? help : "");
    if (labels)
        bt_strvec_split(&m->labels, labels, ',');
    m->series = bt_map_new(series_free);
    bt_vec_push(&reg->families, m);
    return m;
}

bt_metric *bt_metrics_counter(bt_metrics *reg, const char *name, const char *help,
                              const char *labels)
{
    return add_family(reg, M_COUNTER, name, help, labels);
}

bt_metric *bt_metrics_gauge(bt_metrics *reg, const char *name, const char *help, const char *labels)
{
    return add_family(reg, M_GAUGE, name, help, labels);
}

bt_metric *bt_metrics_histogram(bt_metrics *reg, const char *name, const char *help,
                                const char *labels, const double *buckets, size_t nbuckets)
{
    bt_metric *m = add_family(reg, M_HISTOGRAM, name, help, labels);
    if (m && !m->buckets) {
        m->nbuckets = nbuckets;
        m->buckets = bt_xcalloc(nbuckets ? nbuckets : 1, sizeof(double));
        memcpy(m->buckets, buckets, nbuckets * sizeof(double));
    }
    return m;
}

/* Find or create the series for the label values in ap. */
static series *get_series(bt_metric *m, va_list ap, int create)
{
    bt_strbuf key = BT_STRBUF_INIT;
    const char *vals[32];
    size_t n = m->labels.len < 32 ? m->labels.len : 32;
    for (size_t i = 0; i < n; i++) {
        const char *v = va_arg(ap, const char *);
        vals[i] = v ? v : "";
        bt_strbuf_addstr(&key, vals[i]);
        bt_strbuf_addch(&key, '\x1f');
    }
    series *s = bt_map_get(m->series, bt_strbuf_cstr(&key));
    if (!s && create) {
        s = bt_xcalloc(1, sizeof *s);
        s->values = bt_xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
            s->values[i] = bt_xstrdup(vals[i]);
        if (m->type == M_HISTOGRAM)
            s->bucket_counts = bt_xcalloc(m->nbuckets + 1, sizeof(unsigned long long));
        bt_map_set(m->series, bt_strbuf_cstr(&key), s);
    }
    bt_strbuf_release(&key);
    return s;
}

void bt_metric_inc(bt_metric *m, double v, ...)
{
    if (!m || v < 0 || m->type == M_HISTOGRAM)
        return;
    va_list ap;
    va_start(ap, v);
    series *s = get_series(m, ap, 1);
    va_end(ap);
    s->value += v;
}

void bt_metric_set(bt_metric *m, double v, ...)
{
    if (!m || m->type != M_GAUGE)
        return;
    va_list ap;
    va_start(ap, v);
    series *s = get_series(m, ap, 1);
    va_end(ap);
    s->value = v;
}

void bt_metric_observe(bt_metric *m, double v, ...)
{
    if (!m || m->type != M_HISTOGRAM)
        return;
    va_list ap;
    va_start(ap, v);
    series *s = get_series(m, ap, 1);
    va_end(ap);
    size_t i = 0;
    while (i < m->nbuckets && v > m->buckets[i])
        i++;
    s->bucket_counts[i]++;
    s->sum += v;
    s->count++;
}

double bt_metric_value(bt_metric *m, ...)
{
    if (!m)
        return 0;
    va_list ap;
    va_start(ap, m);
    series *s = get_series(m, ap, 0);
    va_end(ap);
    if (!s)
        return 0;
    return m->type == M_HISTOGRAM ? (double)s->count : s->value;
}

void bt_metric_reset(bt_metric *m)
{
    if (!m)
        return;
    bt_map_free(m->series);
    m->series = bt_map_new(series_free);
}

void bt_metrics_on_collect(bt_metrics *reg, bt_metrics_collect_fn fn, void *ud)
{
    bt_vec_reserve(&reg->collectors, reg->collectors.len + 1);
    reg->collectors.items[reg->collectors.len].fn = fn;
    reg->collectors.items[reg->collectors.len].ud = ud;
    reg->collectors.len++;
}

static void add_escaped(bt_strbuf *out, const char *s, int in_label)
{
    for (; *s; s++) {
        if (*s == '\\')
            bt_strbuf_addstr(out, "\\\\");
        else if (*s == '\n')
            bt_strbuf_addstr(out, "\\n");
        else if (*s == '"' && in_label)
            bt_strbuf_addstr(out, "\\\"");
        else
            bt_strbuf_addch(out, *s);
    }
}

static void add_number(bt_strbuf *out, double v)
{
    if (isnan(v))
        bt_strbuf_addstr(out, "NaN");
    else if (isinf(v))
        bt_strbuf_addstr(out, v > 0 ? "+Inf" : "-Inf");
    else
        bt_strbuf_add_double(out, v);
}

static void add_labels(bt_strbuf *out, const bt_metric *m, const series *s, const char *le)
{
    if (m->labels.len == 0 && !le)
        return;
    bt_strbuf_addch(out, '{');
    for (size_t i = 0; i < m->labels.len; i++) {
        if (i)
            bt_strbuf_addch(out, ',');
        bt_strbuf_addf(out, "%s=\"", m->labels.items[i]);
        add_escaped(out, s->values[i], 1);
        bt_strbuf_addch(out, '"');
    }
    if (le) {
        if (m->labels.len)
            bt_strbuf_addch(out, ',');
        bt_strbuf_addf(out, "le=\"%s\"", le);
    }
    bt_strbuf_addch(out, '}');
}

void bt_metrics_render(bt_metrics *reg, bt_strbuf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    for (size_t i = 0; i < reg->collectors.len; i++)
        reg->collectors.items[i].fn(reg, reg->collectors.items[i].ud);
    for (size_t f = 0; f < reg->families.len; f++) {
        bt_metric *m = reg->families.items[f];
        bt_strbuf_addf(out, "# HELP %s ", m->name);
        add_escaped(out, m->help, 0);
        bt_strbuf_addf(out, "\n# TYPE %s %s\n", m->name, type_names[m->type]);
        size_t n;
        const char **keys = bt_map_keys_sorted(m->series, &n);
        for (size_t k = 0; k < n; k++) {
            const series *s = bt_map_get(m->series, keys[k]);
            if (m->type != M_HISTOGRAM) {
                bt_strbuf_addstr(out, m->name);
                add_labels(out, m, s, NULL);
                bt_strbuf_addch(out, ' ');
                add_number(out, s->value);
                bt_strbuf_addch(out, '\n');
                continue;
            }
            unsigned long long cum = 0;
            for (size_t b = 0; b <= m->nbuckets; b++) {
                cum += s->bucket_counts[b];
                char le[64];
                if (b == m->nbuckets) {
                    strcpy(le, "+Inf");
                } else {
                    bt_strbuf tmp = BT_STRBUF_INIT;
                    add_number(&tmp, m->buckets[b]);
                    snprintf(le, sizeof le, "%s", tmp.buf);
                    bt_strbuf_release(&tmp);
                }
                bt_strbuf_addf(out, "%s_bucket", m->name);
                add_labels(out, m, s, le);
                bt_strbuf_addf(out, " %llu\n", cum);
            }
            bt_strbuf_addf(out, "%s_sum", m->name);
            add_labels(out, m, s, NULL);
            bt_strbuf_addch(out, ' ');
            add_number(out, s->sum);
            bt_strbuf_addf(out, "\n%s_count", m->name);
            add_labels(out, m, s, NULL);
            bt_strbuf_addf(out, " %llu\n", s->count);
        }
        free(keys);
    }
}
