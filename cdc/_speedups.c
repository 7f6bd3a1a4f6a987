/* The per-row loops of the stream, compiled: decoding a pgoutput tuple, mapping a source row
 * to its target row, writing rows in COPY text format, writing the Kafka capture's messages as
 * JSON. Pure functions, exactly equal to their Python versions (cdc/sources/pgoutput.py
 * `tuple_data_py`, cdc/sinks/sqlalchemy.py `map_row_py`, cdc/sinks/pgbulk.py `copy_text_py`,
 * cdc/transport/kafka_envelope.py `json_bytes_py`, `json_row_py`, `json_join_py`), which run
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

/* ==== Kafka capture: JSON as json.dumps writes it ========================================
 * `json_bytes(obj, default, sort_keys)` is exactly
 * `json.dumps(obj, default=default, separators=(",", ":"), sort_keys=sort_keys).encode()`
 * (ensure_ascii, allow_nan, check_circular; the Python version is
 * cdc/transport/kafka_envelope.py `json_bytes_py`): the same bytes, and the same errors for a
 * value it cannot encode, a key of another type, a circular structure or a deep one. It
 * follows CPython 3.11's Modules/_json.c case by case, but writes into one buffer instead of
 * joining a list of pieces. */

typedef struct {
    Out o;
    PyObject *dflt;
    int sort_keys;
    PyObject **marks;  /* the containers (and defaulted values) being encoded: json's markers */
    Py_ssize_t nmarks, capmarks;
} Json;

static int json_obj(Json *j, PyObject *obj);

static int
json_mark(Json *j, PyObject *obj)
{
    for (Py_ssize_t i = 0; i < j->nmarks; i++) {
        if (j->marks[i] == obj) {
            PyErr_SetString(PyExc_ValueError, "Circular reference detected");
            return -1;
        }
    }
    if (j->nmarks == j->capmarks) {
        Py_ssize_t cap = j->capmarks ? 2 * j->capmarks : 16;
        PyObject **m = PyMem_Realloc(j->marks, (size_t)cap * sizeof(PyObject *));
        if (m == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        j->marks = m;
        j->capmarks = cap;
    }
    j->marks[j->nmarks++] = obj;
    return 0;
}

static const char hexdigits[] = "0123456789abcdef";

/* encode_basestring_ascii: quotes, escapes, everything outside ' '..'~' as \uXXXX. */
static int
json_str(Json *j, PyObject *s)
{
    if (PyUnicode_READY(s) < 0)
        return -1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_ASCII(s)) {  /* the common case: runs of plain characters copied whole */
        if (grow(&j->o, 2 + 6 * n) < 0)  /* at most \u00XX per character */
            return -1;
        const unsigned char *p = PyUnicode_1BYTE_DATA(s), *end = p + n;
        char *d = j->o.data + j->o.len;
        *d++ = '"';
        while (p < end) {
            const unsigned char *run = p;
            while (p < end && *p >= ' ' && *p != '\\' && *p != '"' && *p != 0x7f)
                p++;
            memcpy(d, run, (size_t)(p - run));
            d += p - run;
            if (p == end)
                break;
            unsigned char c = *p++;
            *d++ = '\\';
            switch (c) {
            case '\\': *d++ = '\\'; break;
            case '"': *d++ = '"'; break;
            case '\b': *d++ = 'b'; break;
            case '\f': *d++ = 'f'; break;
            case '\n': *d++ = 'n'; break;
            case '\r': *d++ = 'r'; break;
            case '\t': *d++ = 't'; break;
            default:
                *d++ = 'u';
                *d++ = '0';
                *d++ = '0';
                *d++ = hexdigits[(c >> 4) & 0xf];
                *d++ = hexdigits[c & 0xf];
            }
        }
        *d++ = '"';
        j->o.len = d - j->o.data;
        return 0;
    }
    if (grow(&j->o, 2 + 12 * n) < 0)  /* at most a surrogate pair per character */
        return -1;
    char *d = j->o.data + j->o.len;
    *d++ = '"';
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= ' ' && c <= '~' && c != '\\' && c != '"') {
            *d++ = (char)c;
            continue;
        }
        *d++ = '\\';
        switch (c) {
        case '\\': *d++ = '\\'; break;
        case '"': *d++ = '"'; break;
        case '\b': *d++ = 'b'; break;
        case '\f': *d++ = 'f'; break;
        case '\n': *d++ = 'n'; break;
        case '\r': *d++ = 'r'; break;
        case '\t': *d++ = 't'; break;
        default:
            if (c >= 0x10000) {
                Py_UCS4 v = c - 0x10000;
                Py_UCS4 hi = 0xd800 | ((v >> 10) & 0x3ff);
                *d++ = 'u';
                *d++ = hexdigits[(hi >> 12) & 0xf];
                *d++ = hexdigits[(hi >> 8) & 0xf];
                *d++ = hexdigits[(hi >> 4) & 0xf];
                *d++ = hexdigits[hi & 0xf];
                c = 0xdc00 | (v & 0x3ff);
                *d++ = '\\';
            }
            *d++ = 'u';
            *d++ = hexdigits[(c >> 12) & 0xf];
            *d++ = hexdigits[(c >> 8) & 0xf];
            *d++ = hexdigits[(c >> 4) & 0xf];
            *d++ = hexdigits[c & 0xf];
        }
    }
    *d++ = '"';
    j->o.len = d - j->o.data;
    return 0;
}

/* Text that is ASCII already (a number's repr) as it is. */
static int
json_ascii_of(Json *j, PyObject *text)
{
    if (text == NULL)
        return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    int rc = s == NULL ? -1 : put(&j->o, s, n);
    Py_DECREF(text);
    return rc;
}

static int
json_int(Json *j, PyObject *obj)
{
    if (PyLong_CheckExact(obj)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (!overflow) {
            if (v == -1 && PyErr_Occurred())
                return -1;
            char tmp[32];
            int n = snprintf(tmp, sizeof(tmp), "%lld", v);
            return put(&j->o, tmp, n);
        }
    }
    return json_ascii_of(j, PyLong_Type.tp_repr(obj));  /* int.__repr__, for subclasses too */
}

static int
json_float(Json *j, PyObject *obj)
{
    double x = PyFloat_AS_DOUBLE(obj);
    if (!Py_IS_FINITE(x)) {
        if (x > 0)
            return put(&j->o, "Infinity", 8);
        if (x < 0)
            return put(&j->o, "-Infinity", 9);
        return put(&j->o, "NaN", 3);
    }
    return json_ascii_of(j, PyFloat_Type.tp_repr(obj));
}

static int
json_list(Json *j, PyObject *seq)
{
    PyObject *fast = PySequence_Fast(seq, "_iterencode_list needs a sequence");
    if (fast == NULL)
        return -1;
    int rc = -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n == 0) {
        rc = put(&j->o, "[]", 2);
        goto done;
    }
    if (json_mark(j, seq) < 0 || put(&j->o, "[", 1) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i && put(&j->o, ",", 1) < 0)
            goto done;
        if (json_obj(j, PySequence_Fast_GET_ITEM(fast, i)) < 0)
            goto done;
    }
    j->nmarks--;
    rc = put(&j->o, "]", 1);
done:
    Py_DECREF(fast);
    return rc;
}

/* One key: a str as it is; a float, bool, None or int as its JSON text, quoted. */
static int
json_key(Json *j, PyObject *key)
{
    if (PyUnicode_Check(key))
        return json_str(j, key);
    if (PyFloat_Check(key) || key == Py_True || key == Py_False || key == Py_None
        || PyLong_Check(key)) {
        if (put(&j->o, "\"", 1) < 0)
            return -1;
        int rc;
        if (PyFloat_Check(key))
            rc = json_float(j, key);
        else if (key == Py_True)
            rc = put(&j->o, "true", 4);
        else if (key == Py_False)
            rc = put(&j->o, "false", 5);
        else if (key == Py_None)
            rc = put(&j->o, "null", 4);
        else
            rc = json_ascii_of(j, PyLong_Type.tp_repr(key));
        if (rc < 0)
            return -1;
        return put(&j->o, "\"", 1);
    }
    PyErr_Format(PyExc_TypeError, "keys must be str, int, float, bool or None, not %.100s",
                 Py_TYPE(key)->tp_name);
    return -1;
}

static int
json_item(Json *j, PyObject *key, PyObject *value, int first)
{
    if (!first && put(&j->o, ",", 1) < 0)
        return -1;
    if (json_key(j, key) < 0 || put(&j->o, ":", 1) < 0)
        return -1;
    return json_obj(j, value);
}

static int
json_dict(Json *j, PyObject *dct)
{
    if (PyDict_GET_SIZE(dct) == 0)
        return put(&j->o, "{}", 2);
    if (json_mark(j, dct) < 0 || put(&j->o, "{", 1) < 0)
        return -1;
    if (PyDict_CheckExact(dct) && !j->sort_keys) {
        /* in place, each pair held while its value is encoded (`default` runs Python code) */
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        int first = 1;
        while (PyDict_Next(dct, &pos, &key, &value)) {
            Py_INCREF(key);
            Py_INCREF(value);
            int rc = json_item(j, key, value, first);
            Py_DECREF(key);
            Py_DECREF(value);
            if (rc < 0)
                return -1;
            first = 0;
        }
    } else {
        PyObject *items = PyMapping_Items(dct);
        if (items == NULL)
            return -1;
        if (j->sort_keys && PyList_Sort(items) < 0) {
            Py_DECREF(items);
            return -1;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
            PyObject *item = PyList_GET_ITEM(items, i);
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
                PyErr_SetString(PyExc_ValueError, "items must return 2-tuples");
                Py_DECREF(items);
                return -1;
            }
            if (json_item(j, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1), i == 0) < 0) {
                Py_DECREF(items);
                return -1;
            }
        }
        Py_DECREF(items);
    }
    j->nmarks--;
    return put(&j->o, "}", 1);
}

static int
json_obj(Json *j, PyObject *obj)
{
    if (obj == Py_None)
        return put(&j->o, "null", 4);
    if (obj == Py_True)
        return put(&j->o, "true", 4);
    if (obj == Py_False)
        return put(&j->o, "false", 5);
    if (PyUnicode_Check(obj))
        return json_str(j, obj);
    if (PyLong_Check(obj))
        return json_int(j, obj);
    if (PyFloat_Check(obj))
        return json_float(j, obj);
    int rc;
    if (PyList_Check(obj) || PyTuple_Check(obj)) {
        if (Py_EnterRecursiveCall(" while encoding a JSON object"))
            return -1;
        rc = json_list(j, obj);
        Py_LeaveRecursiveCall();
        return rc;
    }
    if (PyDict_Check(obj)) {
        if (Py_EnterRecursiveCall(" while encoding a JSON object"))
            return -1;
        rc = json_dict(j, obj);
        Py_LeaveRecursiveCall();
        return rc;
    }
    if (json_mark(j, obj) < 0)
        return -1;
    PyObject *other = PyObject_CallOneArg(j->dflt, obj);
    if (other == NULL)
        return -1;
    if (Py_EnterRecursiveCall(" while encoding a JSON object")) {
        Py_DECREF(other);
        return -1;
    }
    rc = json_obj(j, other);
    Py_LeaveRecursiveCall();
    Py_DECREF(other);
    if (rc < 0)
        return -1;
    j->nmarks--;
    return 0;
}

static PyObject *
json_bytes(PyObject *self, PyObject *args)
{
    PyObject *obj, *dflt;
    int sort_keys;
    if (!PyArg_ParseTuple(args, "OOp", &obj, &dflt, &sort_keys))
        return NULL;
    Json j = {{NULL, 0, 0}, dflt, sort_keys, NULL, 0, 0};
    PyObject *result = NULL;
    if (json_obj(&j, obj) == 0)
        result = PyBytes_FromStringAndSize(j.o.data ? j.o.data : "", j.o.len);
    PyMem_Free(j.o.data);
    PyMem_Free(j.marks);
    return result;
}


#define ROW_ON_STACK 32

/* json_row_into for a dict in its own order: its pairs held in an array, not a list of tuples.
 * A codec that changes the row's size is an error, as in convert()'s iteration. */
static int
json_dict_row(Json *j, PyObject *row, PyObject *codecs)
{
    Py_ssize_t n = PyDict_GET_SIZE(row);
    if (n == 0)
        return put(&j->o, "{}", 2);
    PyObject *stack[2 * ROW_ON_STACK];
    PyObject **kv = n <= ROW_ON_STACK ? stack : PyMem_Malloc((size_t)(2 * n) * sizeof(PyObject *));
    if (kv == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t pos = 0, got = 0;
    PyObject *key, *value;
    while (got < n && PyDict_Next(row, &pos, &key, &value)) {
        kv[2 * got] = Py_NewRef(key);
        kv[2 * got + 1] = Py_NewRef(value);
        got++;
    }
    int rc = -1;
    for (Py_ssize_t i = 0; i < got; i++) {
        PyObject *v = kv[2 * i + 1];
        if (v == Py_None)
            continue;
        PyObject *fn = PyDict_GetItemWithError(codecs, kv[2 * i]);
        if (fn == NULL) {
            if (PyErr_Occurred())
                goto done;
            continue;
        }
        if (fn == Py_None)
            continue;
        PyObject *out = PyObject_CallOneArg(fn, v);
        if (out == NULL)
            goto done;
        kv[2 * i + 1] = out;
        Py_DECREF(v);
        if (PyDict_GET_SIZE(row) != n) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            goto done;
        }
    }
    if (put(&j->o, "{", 1) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < got; i++) {
        if (json_item(j, kv[2 * i], kv[2 * i + 1], i == 0) < 0)
            goto done;
    }
    rc = put(&j->o, "}", 1);
done:
    for (Py_ssize_t i = 0; i < 2 * got; i++)
        Py_DECREF(kv[i]);
    if (kv != stack)
        PyMem_Free(kv);
    return rc;
}


/* A row, each value through its column's codec first: json_bytes of kafka_values.convert(row,
 * codecs) (a codec of None, or none, leaves the value as it is; None stays None). Every value
 * is converted before any is written, as convert() does before json.dumps runs, so a codec's
 * error comes first. */
static int
json_row_into(Json *j, PyObject *row, PyObject *codecs)
{
    if (row == Py_None)
        return put(&j->o, "null", 4);
    if (!PyDict_CheckExact(codecs)) {
        PyErr_SetString(PyExc_TypeError, "json_row: codecs must be a dict");
        return -1;
    }
    if (PyDict_CheckExact(row) && !j->sort_keys)
        return json_dict_row(j, row, codecs);
    /* the row's pairs as they are now (codecs run Python code), as convert() takes them */
    PyObject *items = PyDict_CheckExact(row) ? PyDict_Items(row) : PyMapping_Items(row);
    if (items == NULL)
        return -1;
    int rc = -1;
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_ValueError, "items must return 2-tuples");
            goto done;
        }
        PyObject *key = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
        if (value == Py_None)
            continue;
        PyObject *fn = PyDict_GetItemWithError(codecs, key);
        if (fn == NULL) {
            if (PyErr_Occurred())
                goto done;
            continue;
        }
        if (fn == Py_None)
            continue;
        PyObject *out = PyObject_CallOneArg(fn, value);
        if (out == NULL)
            goto done;
        PyObject *pair = PyTuple_Pack(2, key, out);
        Py_DECREF(out);
        if (pair == NULL)
            goto done;
        PyList_SET_ITEM(items, i, pair);
        Py_DECREF(item);
    }
    if (n == 0) {
        rc = put(&j->o, "{}", 2);
        goto done;
    }
    if (j->sort_keys && PyList_Sort(items) < 0)
        goto done;
    /* not marked: json.dumps marks the converted copy, which nothing else refers to */
    if (put(&j->o, "{", 1) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (json_item(j, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1), i == 0) < 0)
            goto done;
    }
    rc = put(&j->o, "}", 1);
done:
    Py_DECREF(items);
    return rc;
}

static PyObject *
json_row(PyObject *self, PyObject *args)
{
    PyObject *row, *codecs, *dflt;
    int sort_keys;
    if (!PyArg_ParseTuple(args, "OOOp", &row, &codecs, &dflt, &sort_keys))
        return NULL;
    Json j = {{NULL, 0, 0}, dflt, sort_keys, NULL, 0, 0};
    PyObject *result = NULL;
    if (Py_EnterRecursiveCall(" while encoding a JSON object"))
        return NULL;
    int rc = json_row_into(&j, row, codecs);
    Py_LeaveRecursiveCall();
    if (rc == 0)
        result = PyBytes_FromStringAndSize(j.o.data ? j.o.data : "", j.o.len);
    PyMem_Free(j.o.data);
    PyMem_Free(j.marks);
    return result;
}

/* parts[0] + JSON(values[0]) + parts[1] + ... + parts[n]: `parts` are JSON text already, and so
 * is a bytes value (a row from json_row); any other value is encoded as json_bytes does. */
static PyObject *
json_join(PyObject *self, PyObject *args)
{
    PyObject *parts, *values, *dflt;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyTuple_Type, &parts, &PyTuple_Type, &values, &dflt))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(values);
    if (PyTuple_GET_SIZE(parts) != n + 1) {
        PyErr_SetString(PyExc_ValueError, "json_join: one part more than values");
        return NULL;
    }
    Json j = {{NULL, 0, 0}, dflt, 0, NULL, 0, 0};
    PyObject *result = NULL;
    if (grow(&j.o, 1024) < 0)
        goto done;
    for (Py_ssize_t i = 0; i <= n; i++) {
        PyObject *part = PyTuple_GET_ITEM(parts, i);
        if (!PyBytes_Check(part)) {
            PyErr_SetString(PyExc_TypeError, "json_join: parts must be bytes");
            goto done;
        }
        if (put(&j.o, PyBytes_AS_STRING(part), PyBytes_GET_SIZE(part)) < 0)
            goto done;
        if (i == n)
            break;
        PyObject *v = PyTuple_GET_ITEM(values, i);
        if (PyBytes_Check(v)) {
            if (put(&j.o, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v)) < 0)
                goto done;
        } else if (json_obj(&j, v) < 0) {
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(j.o.data, j.o.len);
done:
    PyMem_Free(j.o.data);
    PyMem_Free(j.marks);
    return result;
}


/* `timestamptz_encoder(width, other)`: debezium_values' encoder of a timestamp with time zone
 * (`_timestamptz_encoder`), compiled for the text it rearranges ("2024-05-06 05:08:09.5+00",
 * UTC, a 4-digit year: "2024-05-06T05:08:09.500000Z" with `width` fraction digits, or as few
 * as needed for a width of 0); every other value goes to `other`, the Python encoder itself.
 * A builtin function whose self is (width, other), so json_row calls it without a frame. */
static PyObject *
timestamptz_utc(PyObject *state, PyObject *value)
{
    PyObject *other = PyTuple_GET_ITEM(state, 1);
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value))
        return PyObject_CallOneArg(other, value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    const char *s = (const char *)PyUnicode_1BYTE_DATA(value);
    /* the Python version's test, on text long enough that its slices are whole */
    if (n < 22 || s[n - 3] != '+' || s[n - 2] != '0' || s[n - 1] != '0' || s[4] != '-' || s[10] != ' ')
        return PyObject_CallOneArg(other, value);
    long width = PyLong_AsLong(PyTuple_GET_ITEM(state, 0));
    if (width == -1 && PyErr_Occurred())
        return NULL;
    const char *frac = s + 20;
    Py_ssize_t nfrac = n - 23 > 0 ? n - 23 : 0;  /* value[20:-3] */
    Py_ssize_t ntail;
    if (width <= 0) {
        while (nfrac > 0 && frac[nfrac - 1] == '0')
            nfrac--;
        ntail = nfrac ? 1 + nfrac : 0;
    } else {
        ntail = 1 + width;
    }
    PyObject *out = PyUnicode_New(10 + 1 + 8 + ntail + 1, 127);
    if (out == NULL)
        return NULL;
    char *d = (char *)PyUnicode_1BYTE_DATA(out);
    memcpy(d, s, 10);
    d[10] = 'T';
    memcpy(d + 11, s + 11, 8);
    d += 19;
    if (ntail) {
        *d++ = '.';
        for (Py_ssize_t i = 0; i < ntail - 1; i++)
            *d++ = i < nfrac ? frac[i] : '0';
    }
    *d = 'Z';
    return out;
}

static PyMethodDef timestamptz_def = {
    "timestamptz_utc", timestamptz_utc, METH_O,
    "A timestamptz value in Debezium's form (see debezium_values._timestamptz_encoder).",
};

static PyObject *
timestamptz_encoder(PyObject *self, PyObject *args)
{
    PyObject *width, *other;
    if (!PyArg_ParseTuple(args, "O!O", &PyLong_Type, &width, &other))
        return NULL;
    PyObject *state = PyTuple_Pack(2, width, other);
    if (state == NULL)
        return NULL;
    PyObject *fn = PyCFunction_New(&timestamptz_def, state);
    Py_DECREF(state);
    return fn;
}


static PyMethodDef methods[] = {
    {"decode_tuple", decode_tuple, METH_VARARGS,
     "decode_tuple(buf, pos, names, kinds) -> (row, unchanged, next pos): a pgoutput TupleData."},
    {"copy_rows", copy_rows, METH_VARARGS,
     "copy_rows(rows, names, other) -> bytes | None: rows in COPY text format."},
    {"map_row", map_row, METH_VARARGS,
     "map_row(source_row, columns) -> dict: a source row as its target row (see map_row_py)."},
    {"json_bytes", json_bytes, METH_VARARGS,
     "json_bytes(obj, default, sort_keys) -> bytes: json.dumps(obj, default=default, "
     "separators=(',', ':'), sort_keys=sort_keys).encode() (see json_bytes_py)."},
    {"json_row", json_row, METH_VARARGS,
     "json_row(row, codecs, default, sort_keys) -> bytes: json_bytes of the row, each value "
     "through its column's codec (see json_row_py)."},
    {"json_join", json_join, METH_VARARGS,
     "json_join(parts, values, default) -> bytes: JSON text parts with each value's JSON "
     "between them; bytes values as they are (see json_join_py)."},
    {"timestamptz_encoder", timestamptz_encoder, METH_VARARGS,
     "timestamptz_encoder(width, other) -> function: a timestamptz value in Debezium's form, "
     "compiled for UTC text, `other` for the rest (see debezium_values._timestamptz_encoder)."},
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
