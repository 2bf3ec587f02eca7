/*
 * pq_dl.c - libpq loaded with dlopen on first use (see pq_dl.h). RTLD_LOCAL keeps its
 * symbols (and those of its dependencies) out of the global namespace; RTLD_NOW
 * resolves everything up front so a broken install fails here, with a message, and
 * not in the middle of a query. The handle is never closed.
 */
#include "store/pq_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#define PQ_SONAME "libpq.so.5"

bt_pq_api bt_pq;

static pthread_mutex_t bt_pq_mu = PTHREAD_MUTEX_INITIALIZER;
static int bt_pq_loaded;

/* dlsym returns void *; the POSIX way to turn it into a function pointer is to copy
 * the representation (ISO C has no conversion between the two). */
static int resolve(void *lib, const char *name, void *slot, size_t size, bt_error *err)
{
    void *sym = dlsym(lib, name);
    if (!sym)
        return bt_errorf(err, BT_EUNAVAIL,
                         "PostgreSQL support needs %s with %s (libpq 14 or newer; Debian "
                         "package libpq5): %s",
                         PQ_SONAME, name, dlerror());
    memcpy(slot, &sym, size);
    return 0;
}

static int load_locked(bt_error *err)
{
    void *lib = dlopen(PQ_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return bt_errorf(err, BT_EUNAVAIL,
                         "PostgreSQL support needs %s (Debian package libpq5; install it with "
                         "`apt-get install libpq5`): %s",
                         PQ_SONAME, dlerror());
    bt_pq_api api;
    int rc = 0;
#define BT_PQ_RESOLVE(name)                                                                        \
    if (!rc)                                                                                       \
        rc = resolve(lib, #name, &api.name, sizeof api.name, err);
    BT_PQ_FUNCS(BT_PQ_RESOLVE)
#undef BT_PQ_RESOLVE
    if (rc) {
        dlclose(lib);
        return rc;
    }
    bt_pq = api;
    bt_pq_loaded = 1;
    return 0;
}

int bt_pq_load(bt_error *err)
{
    pthread_mutex_lock(&bt_pq_mu);
    int rc = bt_pq_loaded ? 0 : load_locked(err);
    pthread_mutex_unlock(&bt_pq_mu);
    return rc;
}
