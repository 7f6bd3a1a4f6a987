/* The per-row loops of the stream, compiled: decoding a pgoutput tuple, mapping a source row
 * to its target row, writing rows in COPY text format. Pure functions, exactly equal to their
 * Python versions (cdc/sources/pgoutput.py `tuple_data_py`, cdc/sinks/sqlalchemy.py
 * `map_row_py`, cdc/sinks/pgbulk.py `copy_text_py`), which run
 * wherever this module did not build; tests/cdc/test_speedups.py holds the two to each
 * other. Built by setup.py when a C compiler is there (optional); see cdc/native.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *Decimal;  /* decimal.Decimal */

/* ---- decode_tuple ---------------------------------------------------------------------- */

static int32_t
read_i32(const unsigned char *p)
{
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3]);
}

/* One column's text as the value its kind asks for (see pgoutput.KINDS). */
static PyObject *
cast(char kind, const char *s, Py_ssize_t n)
{
    switch (kind) {
    case 'i': {
        char tmp[64];
        char *end = NULL;
        PyObject *v;
        if (n <= 0 || n >= (Py_ssize_t)sizeof(tmp)) {
            PyObject *b = PyBytes_FromStringAndSize(s, n);
            if (b == NULL)
                return NULL;
            v = PyNumber_Long(b);
            Py_DECREF(b);
            return v;
        }
        memcpy(tmp, s, (size_t)n);
        tmp[n] = '\0';
        v = PyLong_FromString(tmp, &end, 10);
        if (v != NULL && end != tmp + n) {
            Py_DECREF(v);
            PyErr_Format(PyExc_ValueError, "invalid literal for int(): %.60s", tmp);
            return NULL;
        }
        return v;
    }
    case 'f': {
        PyObject *b = PyBytes_FromStringAndSize(s, n);
        PyObject *v;
        if (b == NULL)
            return NULL;
        v = PyFloat_FromString(b);
        Py_DECREF(b);
        return v;
    }
    case 'n': {
        PyObject *t = PyUnicode_DecodeUTF8(s, n, "strict");
        PyObject *v;
        if (t == NULL)
            return NULL;
        v = PyObject_CallOneArg(Decimal, t);
        Py_DECREF(t);
        return v;
    }
    case 'b':
        return PyBool_FromLong(n == 1 && s[0] == 't');
    default:
        return PyUnicode_DecodeUTF8(s, n, "strict");
    }
}

static PyObject *
truncated(void)
{
    PyErr_SetString(PyExc_ValueError, "pgoutput tuple is truncated");
    return NULL;
}

static PyObject *
decode_tuple(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t pos;
    PyObject *names;
    const char *kinds;
    Py_ssize_t nkinds;
    if (!PyArg_ParseTuple(args, "y*nO!s#", &buf, &pos, &PyTuple_Type, &names, &kinds, &nkinds))
        return NULL;
    const unsigned char *p = buf.buf;
    Py_ssize_t len = buf.len;
    Py_ssize_t ncols = PyTuple_GET_SIZE(names);
    PyObject *row = NULL, *unchanged = NULL, *result = NULL;
    if (nkinds != ncols) {
        PyErr_SetString(PyExc_ValueError, "names and kinds differ in length");
        goto done;
    }
    row = PyDict_New();
    unchanged = PyList_New(0);
    if (row == NULL || unchanged == NULL)
        goto done;
    pos += 2;  /* column count: always the relation's */
    for (Py_ssize_t i = 0; i < ncols; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        PyObject *value;
        if (pos < 0 || pos >= len) {
            truncated();
            goto done;
        }
        unsigned char kind = p[pos];
        if (kind == 'n') {
            if (PyDict_SetItem(row, name, Py_None) < 0)
                goto done;
            pos += 1;
            continue;
        }
        if (kind == 'u') {
            if (PyList_Append(unchanged, name) < 0)
                goto done;
            pos += 1;
            continue;
        }
        if (pos + 5 > len) {
            truncated();
            goto done;
        }
        int32_t n = read_i32(p + pos + 1);
        if (n < 0 || pos + 5 + n > len) {
            truncated();
            goto done;
        }
        const char *data = (const char *)p + pos + 5;
        if (kind == 't')
            value = cast(kinds[i], data, n);
        else  /* 'b' binary: not requested (binary 'false'); keep the bytes */
            value = PyBytes_FromStringAndSize(data, n);
        if (value == NULL)
            goto done;
        if (PyDict_SetItem(row, name, value) < 0) {
            Py_DECREF(value);
            goto done;
        }
        Py_DECREF(value);
        pos += 5 + n;
    }
    result = Py_BuildValue("(OOn)", row, unchanged, pos);
done:
    Py_XDECREF(row);
    Py_XDECREF(unchanged);
    PyBuffer_Release(&buf);
    return result;
}

/* ---- copy_rows ------------------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Out;

static int
grow(Out *o, Py_ssize_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more)
        cap *= 2;
    char *d = PyMem_Realloc(o->data, (size_t)cap);
    if (d == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->data = d;
    o->cap = cap;
    return 0;
}

static int
put(Out *o, const char *s, Py_ssize_t n)
{
    if (grow(o, n) < 0)
        return -1;
    memcpy(o->data + o->len, s, (size_t)n);
    o->len += n;
    return 0;
}

/* UTF-8 text with COPY's escapes for backslash, tab, newline and carriage return. */
static int
put_escaped(Out *o, PyObject *text)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL)
        return -1;
    if (grow(o, 2 * n) < 0)
        return -1;
    char *d = o->data + o->len;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\': *d++ = '\\'; *d++ = '\\'; break;
        case '\t': *d++ = '\\'; *d++ = 't'; break;
        case '\n': *d++ = '\\'; *d++ = 'n'; break;
        case '\r': *d++ = '\\'; *d++ = 'r'; break;
        default: *d++ = c;
        }
    }
    o->len = d - o->data;
    return 0;
}

static int
put_str_of(Out *o, PyObject *v)
{
    PyObject *t = PyObject_Str(v);
    if (t == NULL)
        return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(t, &n);
    int rc = s == NULL ? -1 : put(o, s, n);
    Py_DECREF(t);
    return rc;
}

/* 1: written; 0: no simple text form (`other` said None); -1: error */
static int
put_value(Out *o, PyObject *v, PyObject *other)
{
    PyTypeObject *t = Py_TYPE(v);
    if (v == Py_None)
        return put(o, "\\N", 2) < 0 ? -1 : 1;
    if (t == &PyUnicode_Type)
        return put_escaped(o, v) < 0 ? -1 : 1;
    if (t == &PyBool_Type)
        return put(o, v == Py_True ? "t" : "f", 1) < 0 ? -1 : 1;
    if (t == &PyLong_Type || t == &PyFloat_Type || (PyObject *)t == Decimal)
        return put_str_of(o, v) < 0 ? -1 : 1;
    PyObject *text = PyObject_CallOneArg(other, v);
    if (text == NULL)
        return -1;
    if (text == Py_None) {
        Py_DECREF(text);
        return 0;
    }
    if (!PyUnicode_Check(text)) {
        Py_DECREF(text);
        PyErr_SetString(PyExc_TypeError, "copy_rows: `other` must return str or None");
        return -1;
    }
    int rc = put_escaped(o, text);
    Py_DECREF(text);
    return rc < 0 ? -1 : 1;
}

static PyObject *
copy_rows(PyObject *self, PyObject *args)
{
    PyObject *rows, *names, *other;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyList_Type, &rows, &PyTuple_Type, &names, &other))
        return NULL;
    Out o = {NULL, 0, 0};
    PyObject *result = NULL;
    Py_ssize_t nrows = PyList_GET_SIZE(rows), ncols = PyTuple_GET_SIZE(names);
    for (Py_ssize_t r = 0; r < nrows; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyDict_Check(row)) {
            PyErr_SetString(PyExc_TypeError, "copy_rows: rows must be dicts");
            goto done;
        }
        if (ncols == 0 && put(&o, "\n", 1) < 0)
            goto done;
        for (Py_ssize_t c = 0; c < ncols; c++) {
            PyObject *name = PyTuple_GET_ITEM(names, c);
            PyObject *v = PyDict_GetItemWithError(row, name);
            if (v == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetObject(PyExc_KeyError, name);
                goto done;
            }
            Py_INCREF(v);  /* `other` runs Python code that could drop the row's reference */
            int rc = put_value(&o, v, other);
            Py_DECREF(v);
            if (rc < 0)
                goto done;
            if (rc == 0) {
                result = Py_NewRef(Py_None);
                goto done;
            }
            if (put(&o, c + 1 < ncols ? "\t" : "\n", 1) < 0)
                goto done;
        }
    }
    result = PyBytes_FromStringAndSize(o.data ? o.data : "", o.len);
done:
    PyMem_Free(o.data);
    return result;
}

/* ---- map_row --------------------------------------------------------------------------- */

/* One mapped column's value: converted, then coerced to what the target column takes (the
 * loop of cdc/sinks/sqlalchemy.py `map_row_py`). New reference, or NULL with an error. */
static PyObject *
map_value(PyObject *v, PyObject *spec)
{
    PyObject *conv = PyTuple_GET_ITEM(spec, 2), *fast = PyTuple_GET_ITEM(spec, 3);
    PyObject *types = PyTuple_GET_ITEM(spec, 4), *fix = PyTuple_GET_ITEM(spec, 5);
    Py_INCREF(v);
    if (v == Py_None)
        return v;
    if (conv != Py_None) {
        PyObject *c = PyObject_CallOneArg(conv, v);
        Py_DECREF(v);
        if (c == NULL)
            return NULL;
        v = c;
    }
    if (fix == Py_None)
        return v;
    int known = PySet_Contains(fast, (PyObject *)Py_TYPE(v));
    if (known < 0)
        goto fail;
    if (known)
        return v;
    int is = PyObject_IsInstance(v, types);
    if (is < 0)
        goto fail;
    if (is && !(types == (PyObject *)&PyLong_Type && Py_TYPE(v) == &PyBool_Type))
        return v;
    PyObject *f = PyObject_CallOneArg(fix, v);
    Py_DECREF(v);
    return f;
fail:
    Py_DECREF(v);
    return NULL;
}

static PyObject *
map_row(PyObject *self, PyObject *args)
{
    PyObject *source, *columns;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &source, &PyTuple_Type, &columns))
        return NULL;
    PyObject *row = PyDict_New();
    if (row == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(columns); i++) {
        PyObject *spec = PyTuple_GET_ITEM(columns, i);
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 6) {
            PyErr_SetString(PyExc_TypeError, "map_row: each column is a 6-tuple");
            goto fail;
        }
        PyObject *v = PyDict_GetItemWithError(source, PyTuple_GET_ITEM(spec, 0));
        if (v == NULL) {
            if (PyErr_Occurred())
                goto fail;
            continue;  /* absent stays absent */
        }
        PyObject *out = map_value(v, spec);
        if (out == NULL)
            goto fail;
        int rc = PyDict_SetItem(row, PyTuple_GET_ITEM(spec, 1), out);
        Py_DECREF(out);
        if (rc < 0)
            goto fail;
    }
    return row;
fail:
    Py_DECREF(row);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_tuple", decode_tuple, METH_VARARGS,
     "decode_tuple(buf, pos, names, kinds) -> (row, unchanged, next pos): a pgoutput TupleData."},
    {"copy_rows", copy_rows, METH_VARARGS,
     "copy_rows(rows, names, other) -> bytes | None: rows in COPY text format."},
    {"map_row", map_row, METH_VARARGS,
     "map_row(source_row, columns) -> dict: a source row as its target row (see map_row_py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cdc._speedups", "The stream's per-row loops, compiled.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *dec = PyImport_ImportModule("decimal");
    if (dec == NULL)
        return NULL;
    Decimal = PyObject_GetAttrString(dec, "Decimal");
    Py_DECREF(dec);
    if (Decimal == NULL)
        return NULL;
    return PyModule_Create(&module);
}
