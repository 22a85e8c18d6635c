// A C++ program with no Python at run time: transcribes wav files with an artifact's sherpa-onnx
// export (`w2vbert export SOURCE -o OUT --sherpa-onnx`) through sherpa-onnx's C++ API.
//
// Build against the headers and libraries the sherpa-onnx wheel ships (SHERPA = the installed
// sherpa_onnx package directory, e.g. $(python -c "import sherpa_onnx, os; print(os.path.dirname(sherpa_onnx.__file__))")):
//   g++ -O2 -std=c++17 -D_GLIBCXX_USE_CXX11_ABI=0 runtime/embed/sherpa_host.cpp -o sherpa_host
//       -I$SHERPA/include -L$SHERPA/lib -lsherpa-onnx-cxx-api -lsherpa-onnx-c-api -Wl,-rpath,$SHERPA/lib
//   (one line). The wheel's libraries are manylinux2014 builds with the old std::string ABI: without
//   -D_GLIBCXX_USE_CXX11_ABI=0, ReadWave(const std::string&) does not link.
// Run:
//   ./sherpa_host OUT/sherpa-onnx/model.onnx OUT/sherpa-onnx/tokens.txt a.wav [b.wav ...]
// Prints "<file>\t<transcript>" per file, in the order given; all files are decoded as one batch.
#include <cstdio>
#include <string>
#include <vector>

#include "sherpa-onnx/c-api/cxx-api.h"

int main(int argc, char* argv[]) {
    using namespace sherpa_onnx::cxx;  // NOLINT
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL.onnx TOKENS.txt AUDIO.wav [AUDIO.wav ...]\n", argv[0]);
        return 2;
    }
    OfflineRecognizerConfig config;
    config.model_config.fire_red_asr_ctc.model = argv[1];
    config.model_config.tokens = argv[2];
    config.model_config.num_threads = 1;
    OfflineRecognizer recognizer = OfflineRecognizer::Create(config);
    if (!recognizer.Get()) {
        std::fprintf(stderr, "error: sherpa-onnx could not load %s with %s\n", argv[1], argv[2]);
        return 1;
    }
    std::vector<OfflineStream> streams;
    for (int i = 3; i < argc; ++i) {
        Wave wave = ReadWave(argv[i]);
        if (wave.samples.empty()) {
            std::fprintf(stderr, "error: cannot read %s as a wav file\n", argv[i]);
            return 1;
        }
        streams.push_back(recognizer.CreateStream());
        streams.back().AcceptWaveform(wave.sample_rate, wave.samples.data(),
                                      static_cast<int32_t>(wave.samples.size()));
    }
    recognizer.Decode(streams.data(), static_cast<int32_t>(streams.size()));  // one padded batch
    for (size_t i = 0; i < streams.size(); ++i) {
        OfflineRecognizerResult result = recognizer.GetResult(&streams[i]);
        std::printf("%s\t%s\n", argv[i + 3], result.text.c_str());
    }
    return 0;
}
