// A C++ program that embeds CPython, imports the torch-free `runtime` package, loads an
// exported artifact and runs it on features (or raw audio) held in a C++ buffer.
//
// Build (any CPython >= 3.10 with its headers; python3-config of the interpreter whose
// site-packages hold w2vbert-deploy and onnxruntime):
//   g++ -O2 -std=c++17 runtime/embed/w2vbert_host.cpp -o w2vbert_host
//       $(python3-config --cflags --embed) $(python3-config --ldflags --embed)   (one line)
// Run (W2VBERT_PYTHON names the interpreter whose environment to use, e.g. a venv's bin/python;
// without it CPython takes the first python3 on PATH, and PYTHONPATH must reach the packages):
//   W2VBERT_PYTHON=/path/venv/bin/python ./w2vbert_host ARTIFACT features FRAMES OUT.f32
//                                                       # input_features [1, FRAMES, 160]
//   ./w2vbert_host ARTIFACT waveform SAMPLES OUT.f32    # fp32-frontend variant, raw 16 kHz audio
// W2VBERT_PROVIDER picks the Session's provider (cpu by default; openvino with the openvino extra).
// The first output of the model is written to OUT.f32 as raw little-endian float32, and its
// shape is printed on stdout. Inputs are a fixed deterministic pattern, so a test can rebuild
// them in Python and compare with runtime.Session.
#include <Python.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// Owns one reference; never leaks on early return.
struct Ref {
    PyObject* p;
    explicit Ref(PyObject* o = nullptr) : p(o) {}
    ~Ref() { Py_XDECREF(p); }
    Ref(const Ref&) = delete;
    Ref& operator=(const Ref&) = delete;
    explicit operator bool() const { return p != nullptr; }
};

int fail(const char* what) {
    std::fprintf(stderr, "w2vbert_host: %s\n", what);
    if (PyErr_Occurred()) PyErr_Print();  // the package's own error type and message
    return 1;
}

// Same formula as tests/runtime/test_embed.py: values in [-1.5, 1.5], no two rows alike.
std::vector<float> pattern(size_t n, double scale) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(scale * std::sin(0.01 * i + 0.3 * (i % 7)));
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s ARTIFACT features|waveform COUNT OUT.f32\n", argv[0]);
        return 2;
    }
    const std::string artifact = argv[1], mode = argv[2], out_path = argv[4];
    const long count = std::strtol(argv[3], nullptr, 10);
    if ((mode != "features" && mode != "waveform") || count <= 0) {
        std::fprintf(stderr, "mode must be features or waveform and COUNT > 0\n");
        return 2;
    }
    const bool raw = mode == "waveform";
    std::vector<float> input = raw ? pattern(count, 0.3) : pattern(static_cast<size_t>(count) * 160, 1.5);

    // CPython finds its prefix (and a venv's pyvenv.cfg) from the program name: the named interpreter's
    // environment, whatever PATH holds, as a service started by systemd or cron has a bare PATH.
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    if (const char* python = std::getenv("W2VBERT_PYTHON")) {
        PyStatus named = PyConfig_SetBytesString(&config, &config.program_name, python);
        if (PyStatus_Exception(named)) {
            PyConfig_Clear(&config);
            Py_ExitStatusException(named);
        }
    }
    PyStatus started = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(started)) Py_ExitStatusException(started);
    int status = 1;
    {
        Ref np(PyImport_ImportModule("numpy"));
        Ref runtime(PyImport_ImportModule("runtime"));
        if (!np || !runtime) return fail("cannot import numpy / runtime (set W2VBERT_PYTHON to the interpreter that has them)");
        // A zero-copy numpy view of the C++ buffer.
        Ref view(PyMemoryView_FromMemory(reinterpret_cast<char*>(input.data()),
                                         static_cast<Py_ssize_t>(input.size() * sizeof(float)), PyBUF_READ));
        Ref flat(PyObject_CallMethod(np.p, "frombuffer", "Os", view.p, "float32"));
        Ref array(raw ? PyObject_CallMethod(flat.p, "reshape", "ll", 1L, count)
                      : PyObject_CallMethod(flat.p, "reshape", "lll", 1L, count, 160L));
        if (!array) return fail("cannot wrap the input buffer");

        Ref session_type(PyObject_GetAttrString(runtime.p, "Session"));
        Ref args(Py_BuildValue("(s)", artifact.c_str()));
        const char* provider = std::getenv("W2VBERT_PROVIDER");  // e.g. openvino; Session's default otherwise
        Ref kwargs(Py_BuildValue("{s:s,s:s}", "precision", raw ? "fp32-frontend" : "fp32", "provider",
                                 provider ? provider : "cpu"));
        Ref session(PyObject_Call(session_type.p, args.p, kwargs.p));
        if (!session) return fail("cannot load the artifact");
        Ref outputs(PyObject_CallMethod(session.p, raw ? "run_frontend" : "run", "O", array.p));
        if (!outputs) return fail("the model call failed");

        Ref names(PyObject_GetAttrString(session.p, "output_names"));
        PyObject* first_name = PyList_GetItem(names.p, 0);  // borrowed
        PyObject* first = PyDict_GetItem(outputs.p, first_name);  // borrowed
        Ref contiguous(PyObject_CallMethod(np.p, "ascontiguousarray", "Os", first, "float32"));
        if (!contiguous) return fail("cannot read the output");

        Py_buffer buffer;
        if (PyObject_GetBuffer(contiguous.p, &buffer, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) != 0)
            return fail("output is not a readable buffer");
        std::FILE* out = std::fopen(out_path.c_str(), "wb");
        if (out) {
            std::fwrite(buffer.buf, 1, static_cast<size_t>(buffer.len), out);
            std::fclose(out);
            std::printf("%s shape", PyUnicode_AsUTF8(first_name));
            for (int d = 0; d < buffer.ndim; ++d) std::printf(" %ld", static_cast<long>(buffer.shape[d]));
            std::printf("\n");
            status = 0;
        } else {
            std::fprintf(stderr, "cannot write %s\n", out_path.c_str());
        }
        PyBuffer_Release(&buffer);
    }
    if (Py_FinalizeEx() < 0) return 1;
    return status;
}
