/* nginx's MurmurHash2 (src/core/ngx_murmurhash.c: 32-bit, seed 0), for router/balance.py.
 *
 * The same function nginx's split_clients applies to its key, so the router and an exported
 * nginx/HAProxy put every user in the same cohort. router/balance.py holds the pure-Python
 * twin, used where this did not build; tests/router/test_balance.py checks both on one set
 * of vectors. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static uint32_t murmur2(const unsigned char *data, Py_ssize_t len)
{
    uint32_t h = 0 ^ (uint32_t) len, k;
    while (len >= 4) {
        k = (uint32_t) data[0] | (uint32_t) data[1] << 8 | (uint32_t) data[2] << 16
            | (uint32_t) data[3] << 24;
        k *= 0x5bd1e995u;
        k ^= k >> 24;
        k *= 0x5bd1e995u;
        h *= 0x5bd1e995u;
        h ^= k;
        data += 4;
        len -= 4;
    }
    switch (len) {
    case 3: h ^= (uint32_t) data[2] << 16; /* fall through */
    case 2: h ^= (uint32_t) data[1] << 8;  /* fall through */
    case 1: h ^= data[0]; h *= 0x5bd1e995u;
    }
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return h;
}

static PyObject *py_murmur2(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    uint32_t h;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    h = murmur2((const unsigned char *) view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(h);
}

static PyMethodDef methods[] = {
    {"murmur2", py_murmur2, METH_O, "nginx's ngx_murmur_hash2 of a bytes-like object (an int < 2**32)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "router._murmur2", NULL, -1, methods};

PyMODINIT_FUNC PyInit__murmur2(void) { return PyModule_Create(&module); }
