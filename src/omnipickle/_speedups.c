/* omnipickle._speedups: the per-call fast paths of omnipickle.loads and dumps, in C.
 *
 * `accelerate_loads(...)` wraps the pure-Python `loads` in a callable that takes the one call
 * shape message passing makes thousands of times a second, `loads(data)` with `data` a bytes
 * object, and answers it without entering Python code:
 *
 *  - an intact envelope of plain data (format 2, no extra field, CRC-32, a stream smaller than
 *    the layout's `small`), whose first bytes are those the Python side lists for the backends
 *    the fast path may take: the header and the stream are checked, then pickle reads it whole;
 *  - a plain pickle stream (`raw=True`), when no codec claims data that starts with PROTO.
 *
 * Everything else (keyword arguments, another type, load hooks in effect, a payload with an
 * extra field, a larger stream, another checksum, anything damaged) goes to the Python
 * function unchanged, which re-checks and takes its own path: nothing is unpickled twice,
 * because the fallback happens only before pickle is called. What the fast path takes for
 * granted is read from the Python side's objects on every call, so it follows them.
 *
 * `accelerate_dumps(...)` does the same for `dumps(obj)` (with a protocol, and raw=, at
 * most): an atom, or a dict, list or tuple of atoms, goes to pickle.dumps and is wrapped in
 * the envelope here, from the constant bytes the Python side gives per protocol.
 *
 * An error out of pickle in loads is handed to the Python side's `failure(exc, data, raw)`,
 * which says what to raise (as the pure-Python path does): None to re-raise `exc` unchanged,
 * or an error to raise from it.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* --- CRC-32 (the polynomial and conventions of zlib.crc32), eight bytes per step --------- */

static uint32_t crc_table[8][256];

static void
crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        for (int t = 1; t < 8; t++) {
            uint32_t prev = crc_table[t - 1][n];
            crc_table[t][n] = crc_table[0][prev & 0xFF] ^ (prev >> 8);
        }
    }
}

static inline uint32_t
read_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t
read_u64(const unsigned char *p)
{
    return (uint64_t)read_u32(p) | ((uint64_t)read_u32(p + 4) << 32);
}

/* zlib.crc32(bytes(p[:n]), crc) */
static uint32_t
crc32_update(uint32_t crc, const unsigned char *p, Py_ssize_t n)
{
    crc = ~crc;
    while (n >= 8) {
        uint32_t low = read_u32(p) ^ crc;
        uint32_t high = read_u32(p + 4);
        crc = crc_table[7][low & 0xFF] ^ crc_table[6][(low >> 8) & 0xFF] ^
              crc_table[5][(low >> 16) & 0xFF] ^ crc_table[4][low >> 24] ^
              crc_table[3][high & 0xFF] ^ crc_table[2][(high >> 8) & 0xFF] ^
              crc_table[1][(high >> 16) & 0xFF] ^ crc_table[0][high >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0) {
        crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    }
    return ~crc;
}

/* --- the accelerated loads ---------------------------------------------------------------- */

/* The envelope's layout, from the Python side (format.header), checked once when made. */
typedef struct {
    Py_ssize_t plain_size;   /* header, wrapping and POP: where the stored stream starts */
    Py_ssize_t after_fields; /* where the lengths start (the bytes before are looked up) */
    Py_ssize_t lead;         /* PROTO and its argument: raw length = stored length + lead */
    Py_ssize_t small;        /* streams from this size on are left to the Python side */
    unsigned long crc32;     /* the checksum algorithm number of CRC-32 */
    int pop;                 /* the byte that ends the wrapping of the header */
} Layout;

/* After the fields: extra size (u32), stored length (u64), raw length (u64), stored
 * checksum (u32), then the header's CRC (u32), which covers the fields and what follows
 * them up to itself. */
#define NUMBERS_COVERED 24
#define NUMBERS_SIZE 28

/* The fields FastLoads and FastDumps start with, which the slots they share read. */
#define FAST_HEAD                                                                           \
    PyObject_HEAD                                                                           \
    vectorcallfunc vectorcall;                                                              \
    PyObject *dict;     /* __name__, __doc__, __wrapped__...: set by functools.update_wrapper */ \
    PyObject *weakrefs; /* weak references to it, as to the function */                     \
    PyObject *fallback; /* the pure-Python function, which takes every call the C leaves */

typedef struct {
    FAST_HEAD
} FastHead;

typedef struct {
    FAST_HEAD
    PyObject *unpickle; /* pickle.loads */
    PyObject *hooks;    /* the context variable of load hooks: the fast path needs None */
    PyObject *defaults; /* backends.DEFAULTS: builtin, fast_bits, pickle_only */
    PyObject *magics;   /* codecs.MAGICS: proto_unclaimed */
    PyObject *tables;   /* bits -> {first bytes: (fields CRC, lead CRC, algorithm)} */
    PyObject *failure;  /* (exc, data, raw) -> the error to raise from exc, or None */
    PyObject *modules;  /* sys.modules */
    PyObject *last_bits;
    PyObject *last_whole;
    Layout layout;
} FastLoads;

static PyObject *str_builtin, *str_fast_bits, *str_pickle_only, *str_proto_unclaimed;
static PyObject *str_cloudpickle, *str_qualname;

/* 1 if obj.name is true, 0 if false, -1 with an error set. */
static int
attribute_is_true(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* The table of accepted first bytes for the backend bits the fast path may take now (a new
 * reference), or NULL with an error set. */
static PyObject *
accepted_table(FastLoads *self)
{
    int imported = PyDict_Contains(self->modules, str_cloudpickle);
    if (imported < 0) {
        return NULL;
    }
    PyObject *bits =
        PyObject_GetAttr(self->defaults, imported ? str_fast_bits : str_pickle_only);
    if (bits == NULL) {
        return NULL;
    }
    if (bits != self->last_bits) {
        PyObject *whole = PyObject_CallOneArg(self->tables, bits);
        if (whole == NULL) {
            Py_DECREF(bits);
            return NULL;
        }
        if (!PyDict_CheckExact(whole)) {
            PyErr_SetString(PyExc_TypeError, "the table of accepted headers must be a dict");
            Py_DECREF(whole);
            Py_DECREF(bits);
            return NULL;
        }
        Py_XSETREF(self->last_whole, whole);
        Py_XSETREF(self->last_bits, bits);
    }
    else {
        Py_DECREF(bits);
    }
    return Py_NewRef(self->last_whole);
}

static int
read_crc(PyObject *item, unsigned long *out)
{
    *out = PyLong_AsUnsignedLong(item);
    return (*out == (unsigned long)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* 1 if `p[:n]` is an intact envelope the fast path reads, 0 if not (the Python side then
 * decides), -1 with an error set. */
static int
is_plain_envelope(FastLoads *self, const unsigned char *p, Py_ssize_t n)
{
    const Layout *layout = &self->layout;
    if (n < layout->plain_size) {
        return 0;
    }
    int builtin = attribute_is_true(self->defaults, str_builtin);
    if (builtin <= 0) {
        return builtin;
    }
    PyObject *whole = accepted_table(self);
    if (whole == NULL) {
        return -1;
    }
    PyObject *first = PyBytes_FromStringAndSize((const char *)p, layout->after_fields);
    if (first == NULL) {
        Py_DECREF(whole);
        return -1;
    }
    PyObject *known = PyDict_GetItemWithError(whole, first); /* borrowed from whole */
    Py_DECREF(first);
    if (known == NULL) {
        Py_DECREF(whole);
        return PyErr_Occurred() ? -1 : 0;
    }
    unsigned long fields_crc, lead_crc, algorithm;
    int bad = !PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 3;
    if (bad) {
        PyErr_SetString(PyExc_TypeError, "an accepted header's entry must be a 3-tuple");
    }
    else {
        bad = read_crc(PyTuple_GET_ITEM(known, 0), &fields_crc) < 0 ||
              read_crc(PyTuple_GET_ITEM(known, 1), &lead_crc) < 0 ||
              read_crc(PyTuple_GET_ITEM(known, 2), &algorithm) < 0;
    }
    Py_DECREF(whole);
    if (bad) {
        return -1;
    }
    const unsigned char *numbers = p + layout->after_fields;
    uint32_t extra_size = read_u32(numbers);
    uint64_t stored_length = read_u64(numbers + 4);
    uint64_t raw_length = read_u64(numbers + 12);
    uint32_t stored_checksum = read_u32(numbers + 20);
    uint32_t header_crc = read_u32(numbers + 24);
    if (extra_size != 0 || algorithm != layout->crc32 ||
        stored_length >= (uint64_t)layout->small ||
        (Py_ssize_t)stored_length + layout->plain_size != n ||
        raw_length != stored_length + (uint64_t)layout->lead ||
        p[layout->plain_size - 1] != layout->pop) {
        return 0;
    }
    if (crc32_update((uint32_t)fields_crc, numbers, NUMBERS_COVERED) != header_crc) {
        return 0;
    }
    return crc32_update((uint32_t)lead_crc, p + layout->plain_size,
                        (Py_ssize_t)stored_length) == stored_checksum;
}

/* The error being raised, taken out (a new reference): PyErr_GetRaisedException, which
 * Python 3.12 brought. */
static PyObject *
take_raised(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *trace;
    PyErr_Fetch(&type, &value, &trace);
    PyErr_NormalizeException(&type, &value, &trace);
    if (trace != NULL) {
        PyException_SetTraceback(value, trace);
    }
    Py_XDECREF(type);
    Py_XDECREF(trace);
    return value;
#endif
}

/* Raise exc, an exception instance, with its traceback (steals the reference). */
static void
set_raised(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* Raise what the Python side says for the error pickle raised; always returns NULL. */
static PyObject *
raise_failure(FastLoads *self, PyObject *data, int raw)
{
    PyObject *value = take_raised();
    PyObject *error =
        PyObject_CallFunctionObjArgs(self->failure, value, data, raw ? Py_True : Py_False, NULL);
    if (error == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    if (error == Py_None) {
        Py_DECREF(error);
        set_raised(value);
        return NULL;
    }
    if (!PyExceptionInstance_Check(error)) {
        /* what `raise error from value` raises then (only a replaced Python side answers so) */
        Py_SETREF(error, PyObject_CallFunction(PyExc_TypeError, "s",
                                               "exceptions must derive from BaseException"));
        if (error == NULL) {
            Py_DECREF(value);
            return NULL;
        }
        PyException_SetContext(error, value);
        set_raised(error);
        return NULL;
    }
    /* raise error from value */
    Py_INCREF(value);
    PyException_SetContext(error, value);
    PyException_SetCause(error, value);
    set_raised(error);
    return NULL;
}

static PyObject *
fast_loads_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastLoads *self = (FastLoads *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        goto fallback;
    }
    PyObject *data = args[0];
    if (!PyBytes_CheckExact(data)) {
        goto fallback;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n <= 2 || p[0] != 0x80) {
        goto fallback;
    }
    PyObject *hooks;
    if (PyContextVar_Get(self->hooks, Py_None, &hooks) < 0) {
        return NULL;
    }
    Py_DECREF(hooks); /* only compared with None, which lives on */
    if (hooks != Py_None) {
        goto fallback;
    }
    int raw;
    if (p[2] == 0x42) { /* BINBYTES: an envelope's header (or a protocol-3 stream of bytes) */
        int plain = is_plain_envelope(self, p, n);
        if (plain <= 0) {
            if (plain < 0) {
                return NULL;
            }
            goto fallback;
        }
        raw = 0;
    }
    else {
        int unclaimed = attribute_is_true(self->magics, str_proto_unclaimed);
        if (unclaimed <= 0) {
            if (unclaimed < 0) {
                return NULL;
            }
            goto fallback;
        }
        raw = 1;
    }
    PyObject *result = PyObject_Vectorcall(self->unpickle, args, 1, NULL);
    if (result == NULL) {
        return raise_failure(self, data, raw);
    }
    return result;

fallback:
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static int
fast_loads_traverse(FastLoads *self, visitproc visit, void *arg)
{
    Py_VISIT(self->dict);
    Py_VISIT(self->fallback);
    Py_VISIT(self->unpickle);
    Py_VISIT(self->hooks);
    Py_VISIT(self->defaults);
    Py_VISIT(self->magics);
    Py_VISIT(self->tables);
    Py_VISIT(self->failure);
    Py_VISIT(self->modules);
    Py_VISIT(self->last_bits);
    Py_VISIT(self->last_whole);
    return 0;
}

static int
fast_loads_clear(FastLoads *self)
{
    Py_CLEAR(self->dict);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->unpickle);
    Py_CLEAR(self->hooks);
    Py_CLEAR(self->defaults);
    Py_CLEAR(self->magics);
    Py_CLEAR(self->tables);
    Py_CLEAR(self->failure);
    Py_CLEAR(self->modules);
    Py_CLEAR(self->last_bits);
    Py_CLEAR(self->last_whole);
    return 0;
}

/* --- the slots both callables share ------------------------------------------------------ */

static void
fast_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    if (((FastHead *)self)->weakrefs != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    Py_TYPE(self)->tp_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* Pickled, copied and deep-copied by name, as the function it stands for. */
static PyObject *
fast_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyObject_GetAttr(self, str_qualname);
}

static PyObject *
fast_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<accelerated %R>", ((FastHead *)self)->fallback);
}

static PyMethodDef fast_methods[] = {
    {"__reduce__", fast_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef fast_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FastLoadsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omnipickle._speedups.FastLoads",
    .tp_doc = "loads with its per-call fast path in C (see accelerate_loads).",
    .tp_basicsize = sizeof(FastLoads),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(FastLoads, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_dictoffset = offsetof(FastLoads, dict),
    .tp_weaklistoffset = offsetof(FastLoads, weakrefs),
    .tp_traverse = (traverseproc)fast_loads_traverse,
    .tp_clear = (inquiry)fast_loads_clear,
    .tp_dealloc = fast_dealloc,
    .tp_repr = fast_repr,
    .tp_methods = fast_methods,
    .tp_getset = fast_getset,
};

static Py_ssize_t
layout_size(PyObject *layout, const char *name)
{
    PyObject *value = PyMapping_GetItemString(layout, name);
    if (value == NULL) {
        return -1;
    }
    Py_ssize_t size = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    if (size < 0 && !PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "layout[%s] must not be negative", name);
    }
    return size;
}

PyDoc_STRVAR(accelerate_loads_doc,
"accelerate_loads(fallback, unpickle, hooks, defaults, magics, tables, failure, modules, layout)\n"
"--\n"
"\n"
"A callable that answers loads(data) for a bytes envelope of plain data or a plain pickle\n"
"stream in C, and passes every other call to fallback unchanged.\n"
"\n"
"layout is a dict of the envelope's sizes: plain_size, after_fields, header_end, lead,\n"
"small, crc32, pop.");

static PyObject *
accelerate_loads(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_Format(PyExc_TypeError, "accelerate_loads takes 9 arguments (%zd given)", nargs);
        return NULL;
    }
    static const int callables[] = {0, 1, 5, 6}; /* fallback, unpickle, tables, failure */
    for (size_t i = 0; i < sizeof(callables) / sizeof(callables[0]); i++) {
        if (!PyCallable_Check(args[callables[i]])) {
            PyErr_Format(PyExc_TypeError, "accelerate_loads: argument %d must be callable",
                         callables[i] + 1);
            return NULL;
        }
    }
    if (!PyContextVar_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "accelerate_loads: hooks must be a ContextVar");
        return NULL;
    }
    if (!PyDict_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "accelerate_loads: modules must be a dict");
        return NULL;
    }
    Layout layout;
    PyObject *map = args[8];
    Py_ssize_t header_end = -1, crc32 = -1, pop = -1;
    if ((layout.plain_size = layout_size(map, "plain_size")) < 0 ||
        (layout.after_fields = layout_size(map, "after_fields")) < 0 ||
        (header_end = layout_size(map, "header_end")) < 0 ||
        (layout.lead = layout_size(map, "lead")) < 0 ||
        (layout.small = layout_size(map, "small")) < 0 || (crc32 = layout_size(map, "crc32")) < 0 ||
        (pop = layout_size(map, "pop")) < 0) {
        return NULL;
    }
    /* What is_plain_envelope reads must be what the Python side writes. */
    if (header_end != layout.after_fields + NUMBERS_COVERED ||
        layout.plain_size != layout.after_fields + NUMBERS_SIZE + 1 || pop > 255 ||
        layout.after_fields < 3) {
        PyErr_SetString(PyExc_ValueError,
                        "accelerate_loads: the envelope's layout is not the one this build reads");
        return NULL;
    }
    layout.crc32 = (unsigned long)crc32;
    layout.pop = (int)pop;

    FastLoads *self = PyObject_GC_New(FastLoads, &FastLoadsType);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = fast_loads_call;
    self->dict = NULL;
    self->weakrefs = NULL;
    self->fallback = Py_NewRef(args[0]);
    self->unpickle = Py_NewRef(args[1]);
    self->hooks = Py_NewRef(args[2]);
    self->defaults = Py_NewRef(args[3]);
    self->magics = Py_NewRef(args[4]);
    self->tables = Py_NewRef(args[5]);
    self->failure = Py_NewRef(args[6]);
    self->modules = Py_NewRef(args[7]);
    self->last_bits = NULL;
    self->last_whole = NULL;
    self->layout = layout;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* --- the accelerated dumps ---------------------------------------------------------------- */

#define MAX_ATOMS 16
#define MAX_PROTOCOL 16

typedef struct {
    FAST_HEAD
    PyObject *pickle;      /* pickle.dumps */
    PyObject *defaults;    /* backends.DEFAULTS: builtin */
    PyObject *user_rules;  /* resources.USER_RULES: count */
    PyObject *prefix;      /* protocol -> (the envelope's bytes before the lengths, their CRC) */
    PyObject *wrap;        /* (stream, protocol) -> the envelope, for a stream the C leaves */
    PyObject *default_protocol;
    PyObject *atoms[MAX_ATOMS]; /* the exact types pickle writes without a reducer */
    int n_atoms;
    Py_ssize_t max_nodes;
    long highest;
    Py_ssize_t small;
    Py_ssize_t plain_size;
    int pop;
    PyObject *leads[MAX_PROTOCOL]; /* by protocol: the bytes before the lengths */
    uint32_t prefix_crcs[MAX_PROTOCOL]; /* and the CRC of their header part */
} FastDumps;

static PyObject *str_protocol, *str_raw, *str_count;

static inline int
is_atom(FastDumps *self, PyObject *obj)
{
    PyObject *type = (PyObject *)Py_TYPE(obj);
    for (int i = 0; i < self->n_atoms; i++) {
        if (self->atoms[i] == type) {
            return 1;
        }
    }
    return 0;
}

/* Whether obj is an atom, or a dict, list or tuple of at most max_nodes atoms (keys included):
 * what the Python fast path hands pickle.dumps as it is, when no user rule is in force. */
static int
is_flat(FastDumps *self, PyObject *obj)
{
    if (is_atom(self, obj)) {
        return 1;
    }
    if (PyDict_CheckExact(obj)) {
        if (PyDict_GET_SIZE(obj) > self->max_nodes) {
            return 0;
        }
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(obj, &pos, &key, &value)) {
            if (!is_atom(self, key) || !is_atom(self, value)) {
                return 0;
            }
        }
        return 1;
    }
    PyObject **items;
    Py_ssize_t n;
    if (PyList_CheckExact(obj)) {
        items = ((PyListObject *)obj)->ob_item;
        n = PyList_GET_SIZE(obj);
    }
    else if (PyTuple_CheckExact(obj)) {
        items = ((PyTupleObject *)obj)->ob_item;
        n = PyTuple_GET_SIZE(obj);
    }
    else {
        return 0;
    }
    if (n > self->max_nodes) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!is_atom(self, items[i])) {
            return 0;
        }
    }
    return 1;
}

static inline void
write_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void
write_u64(unsigned char *p, uint64_t v)
{
    write_u32(p, (uint32_t)v);
    write_u32(p + 4, (uint32_t)(v >> 32));
}

/* The envelope of a small stream: the constant bytes, the lengths, the stream's CRC, the
 * header's CRC, POP, then the stream after its PROTO opcode. */
static PyObject *
envelope(FastDumps *self, PyObject *stream, long protocol)
{
    Py_ssize_t size = PyBytes_GET_SIZE(stream);
    const unsigned char *body = (const unsigned char *)PyBytes_AS_STRING(stream);
    if (size < 2 || size - 2 >= self->small) {
        return PyObject_CallFunction(self->wrap, "Ol", stream, protocol);
    }
    if (self->leads[protocol] == NULL) {
        PyObject *known = PyObject_CallFunction(self->prefix, "l", protocol);
        if (known == NULL) {
            return NULL;
        }
        unsigned long crc;
        if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(known, 0)) ||
            PyBytes_GET_SIZE(PyTuple_GET_ITEM(known, 0)) + 25 != self->plain_size) {
            Py_DECREF(known);
            PyErr_SetString(PyExc_ValueError, "an envelope's prefix is not the layout's");
            return NULL;
        }
        if (read_crc(PyTuple_GET_ITEM(known, 1), &crc) < 0) {
            Py_DECREF(known);
            return NULL;
        }
        self->prefix_crcs[protocol] = (uint32_t)crc;
        /* a call prefix made (another thread's, or a nested one) may have set it meanwhile */
        Py_XSETREF(self->leads[protocol], Py_NewRef(PyTuple_GET_ITEM(known, 0)));
        Py_DECREF(known);
    }
    PyObject *lead = self->leads[protocol];
    Py_ssize_t lead_size = PyBytes_GET_SIZE(lead);
    Py_ssize_t stored = size - 2;
    PyObject *out = PyBytes_FromStringAndSize(NULL, self->plain_size + stored);
    if (out == NULL) {
        return NULL;
    }
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(p, PyBytes_AS_STRING(lead), (size_t)lead_size);
    unsigned char *numbers = p + lead_size;
    write_u64(numbers, (uint64_t)stored);
    write_u64(numbers + 8, (uint64_t)size);
    write_u32(numbers + 16, crc32_update(0, body, size));
    write_u32(numbers + 20, crc32_update(self->prefix_crcs[protocol], numbers, 20));
    numbers[24] = (unsigned char)self->pop;
    memcpy(numbers + 25, body + 2, (size_t)stored);
    return out;
}

static PyObject *
fast_dumps_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastDumps *self = (FastDumps *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1 || nargs > 2) {
        goto fallback;
    }
    PyObject *protocol = nargs == 2 ? args[1] : NULL;
    int raw = 0;
    if (kwnames != NULL) {
        Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            PyObject *value = args[nargs + i];
            if (!PyUnicode_CheckExact(name)) {
                goto fallback; /* a str subclass: the Python function compares it with == */
            }
            if (protocol == NULL && PyUnicode_Compare(name, str_protocol) == 0) {
                protocol = value;
            }
            else if (PyUnicode_Compare(name, str_raw) == 0 && PyBool_Check(value)) {
                raw = value == Py_True;
            }
            else {
                goto fallback;
            }
        }
    }
    if (protocol == NULL || protocol == Py_None) {
        protocol = self->default_protocol;
    }
    if (!PyLong_CheckExact(protocol)) {
        goto fallback;
    }
    int overflow;
    long proto = PyLong_AsLongAndOverflow(protocol, &overflow);
    if (overflow || proto < 2 || proto > self->highest || proto >= MAX_PROTOCOL) {
        goto fallback; /* -1 too: PyLong_AsLongAndOverflow sets no error for an exact int */
    }
    if (!is_flat(self, args[0])) {
        goto fallback;
    }
    int builtin = attribute_is_true(self->defaults, str_builtin);
    if (builtin <= 0) {
        if (builtin < 0) {
            return NULL;
        }
        goto fallback;
    }
    int user = attribute_is_true(self->user_rules, str_count);
    if (user != 0) {
        if (user < 0) {
            return NULL;
        }
        goto fallback;
    }
    PyObject *call[2] = {args[0], protocol};
    PyObject *stream = PyObject_Vectorcall(self->pickle, call, 2, NULL);
    if (stream == NULL || raw) {
        return stream;
    }
    if (!PyBytes_CheckExact(stream)) {
        Py_DECREF(stream);
        PyErr_SetString(PyExc_TypeError, "pickle.dumps returned something other than bytes");
        return NULL;
    }
    PyObject *out = envelope(self, stream, proto);
    Py_DECREF(stream);
    return out;

fallback:
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static int
fast_dumps_traverse(FastDumps *self, visitproc visit, void *arg)
{
    Py_VISIT(self->dict);
    Py_VISIT(self->fallback);
    Py_VISIT(self->pickle);
    Py_VISIT(self->defaults);
    Py_VISIT(self->user_rules);
    Py_VISIT(self->prefix);
    Py_VISIT(self->wrap);
    Py_VISIT(self->default_protocol);
    for (int i = 0; i < self->n_atoms; i++) {
        Py_VISIT(self->atoms[i]);
    }
    return 0;
}

static int
fast_dumps_clear(FastDumps *self)
{
    Py_CLEAR(self->dict);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->pickle);
    Py_CLEAR(self->defaults);
    Py_CLEAR(self->user_rules);
    Py_CLEAR(self->prefix);
    Py_CLEAR(self->wrap);
    Py_CLEAR(self->default_protocol);
    for (int i = 0; i < self->n_atoms; i++) {
        Py_CLEAR(self->atoms[i]);
    }
    self->n_atoms = 0;
    for (int i = 0; i < MAX_PROTOCOL; i++) {
        Py_CLEAR(self->leads[i]);
    }
    return 0;
}

static PyTypeObject FastDumpsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omnipickle._speedups.FastDumps",
    .tp_doc = "dumps with its per-call fast path in C (see accelerate_dumps).",
    .tp_basicsize = sizeof(FastDumps),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(FastDumps, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_dictoffset = offsetof(FastDumps, dict),
    .tp_weaklistoffset = offsetof(FastDumps, weakrefs),
    .tp_traverse = (traverseproc)fast_dumps_traverse,
    .tp_clear = (inquiry)fast_dumps_clear,
    .tp_dealloc = fast_dealloc,
    .tp_repr = fast_repr,
    .tp_methods = fast_methods,
    .tp_getset = fast_getset,
};

/* config[name] (a new reference), or NULL with an error set. */
static PyObject *
config_item(PyObject *config, const char *name)
{
    PyObject *value = PyMapping_GetItemString(config, name);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "accelerate_dumps: the config lacks %s", name);
    }
    return value;
}

PyDoc_STRVAR(accelerate_dumps_doc,
"accelerate_dumps(fallback, config)\n"
"--\n"
"\n"
"A callable that answers dumps(obj[, protocol][, raw=...]) in C when obj is an atom, or a\n"
"dict, list or tuple of at most max_nodes atoms, and passes every other call to fallback\n"
"unchanged. config: pickle (pickle.dumps), defaults, user_rules, atoms, max_nodes,\n"
"default_protocol, highest_protocol, prefix, wrap, layout.");

static PyObject *
accelerate_dumps(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "accelerate_dumps takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *config = args[1];
    if (!PyCallable_Check(args[0]) || !PyDict_Check(config)) {
        PyErr_SetString(PyExc_TypeError, "accelerate_dumps(fallback, config: dict)");
        return NULL;
    }
    FastDumps *self = PyObject_GC_New(FastDumps, &FastDumpsType);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = fast_dumps_call;
    self->dict = NULL;
    self->weakrefs = NULL;
    self->fallback = Py_NewRef(args[0]);
    self->n_atoms = 0;
    for (int i = 0; i < MAX_PROTOCOL; i++) {
        self->leads[i] = NULL;
        self->prefix_crcs[i] = 0;
    }
    self->pickle = self->defaults = self->user_rules = NULL;
    self->prefix = self->wrap = self->default_protocol = NULL;
    PyObject_GC_Track(self);
    if ((self->pickle = config_item(config, "pickle")) == NULL ||
        (self->defaults = config_item(config, "defaults")) == NULL ||
        (self->user_rules = config_item(config, "user_rules")) == NULL ||
        (self->prefix = config_item(config, "prefix")) == NULL ||
        (self->wrap = config_item(config, "wrap")) == NULL ||
        (self->default_protocol = config_item(config, "default_protocol")) == NULL) {
        goto error;
    }
    if (!PyCallable_Check(self->pickle) || !PyCallable_Check(self->prefix) ||
        !PyCallable_Check(self->wrap) || !PyLong_CheckExact(self->default_protocol)) {
        PyErr_SetString(PyExc_TypeError, "accelerate_dumps: a config item has the wrong type");
        goto error;
    }
    PyObject *atoms = config_item(config, "atoms");
    if (atoms == NULL) {
        goto error;
    }
    PyObject *iterator = PyObject_GetIter(atoms);
    Py_DECREF(atoms);
    if (iterator == NULL) {
        goto error;
    }
    PyObject *atom;
    while ((atom = PyIter_Next(iterator)) != NULL) {
        if (!PyType_Check(atom) || self->n_atoms == MAX_ATOMS) {
            Py_DECREF(atom);
            Py_DECREF(iterator);
            PyErr_SetString(PyExc_ValueError, "accelerate_dumps: atoms must be a few types");
            goto error;
        }
        self->atoms[self->n_atoms++] = atom;
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        goto error;
    }
    PyObject *layout = config_item(config, "layout");
    if (layout == NULL) {
        goto error;
    }
    Py_ssize_t pop = -1;
    int bad = (self->small = layout_size(layout, "small")) < 0 ||
              (self->plain_size = layout_size(layout, "plain_size")) < 0 ||
              (pop = layout_size(layout, "pop")) < 0;
    Py_DECREF(layout);
    if (bad) {
        goto error;
    }
    PyObject *item = config_item(config, "max_nodes");
    if (item == NULL) {
        goto error;
    }
    self->max_nodes = PyLong_AsSsize_t(item);
    Py_DECREF(item);
    if (self->max_nodes == -1 && PyErr_Occurred()) {
        goto error;
    }
    item = config_item(config, "highest_protocol");
    if (item == NULL) {
        goto error;
    }
    self->highest = PyLong_AsLong(item);
    Py_DECREF(item);
    if (self->highest == -1 && PyErr_Occurred()) {
        goto error;
    }
    if (pop > 255 || self->plain_size < 25 || self->max_nodes < 0) {
        PyErr_SetString(PyExc_ValueError, "accelerate_dumps: a config value is out of range");
        goto error;
    }
    self->pop = (int)pop;
    return (PyObject *)self;

error:
    Py_DECREF(self);
    return NULL;
}

PyDoc_STRVAR(crc32_doc,
"crc32(data, value=0, /)\n"
"--\n"
"\n"
"zlib.crc32, as the fast path computes it (for tests).");

static PyObject *
speedups_crc32(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "crc32 takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    unsigned long value = 0;
    if (nargs == 2) {
        value = PyLong_AsUnsignedLongMask(args[1]);
        if (value == (unsigned long)-1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    uint32_t crc = crc32_update((uint32_t)value, view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef speedups_methods[] = {
    {"accelerate_loads", (PyCFunction)(void (*)(void))accelerate_loads, METH_FASTCALL,
     accelerate_loads_doc},
    {"accelerate_dumps", (PyCFunction)(void (*)(void))accelerate_dumps, METH_FASTCALL,
     accelerate_dumps_doc},
    {"crc32", (PyCFunction)(void (*)(void))speedups_crc32, METH_FASTCALL, crc32_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "omnipickle._speedups",
    .m_doc = "The per-call fast paths of omnipickle.loads and dumps, in C (optional: the package "
             "works without it).",
    .m_size = -1,
    .m_methods = speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    crc_init();
    if (PyType_Ready(&FastLoadsType) < 0 || PyType_Ready(&FastDumpsType) < 0) {
        return NULL;
    }
    str_builtin = PyUnicode_InternFromString("builtin");
    str_fast_bits = PyUnicode_InternFromString("fast_bits");
    str_pickle_only = PyUnicode_InternFromString("pickle_only");
    str_proto_unclaimed = PyUnicode_InternFromString("proto_unclaimed");
    str_cloudpickle = PyUnicode_InternFromString("cloudpickle");
    str_qualname = PyUnicode_InternFromString("__qualname__");
    str_protocol = PyUnicode_InternFromString("protocol");
    str_raw = PyUnicode_InternFromString("raw");
    str_count = PyUnicode_InternFromString("count");
    if (str_builtin == NULL || str_fast_bits == NULL || str_pickle_only == NULL ||
        str_proto_unclaimed == NULL || str_cloudpickle == NULL || str_qualname == NULL ||
        str_protocol == NULL || str_raw == NULL || str_count == NULL) {
        return NULL;
    }
    return PyModule_Create(&speedups_module);
}
