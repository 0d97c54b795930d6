using System.CommandLine;
using Deid.Pipeline;

namespace Deid.Cli.Commands;

/// <summary>
/// The options that describe an anonymization job (mode, detector, workers, latent mode...), defined once and added to
/// every command that runs jobs (`deid anonymize`, `deid batch`); <see cref="Build"/> turns a parse into
/// <see cref="AnonymizeOptions"/>.
/// </summary>
public sealed class AnonymizeOptionSet
{
    public Option<string> Mode { get; } = new("--mode")
    {
        Description = "What to do with each face: blur, pixelate, passthrough, or latent (neural replacement by one fixed synthetic or photo identity per track).",
        DefaultValueFactory = _ => "blur",
    };
    public Option<int> Workers { get; } = new("--workers") { Description = "Parallel landmark workers (faces are found in frame order by one finder that follows the stream).", DefaultValueFactory = _ => Environment.ProcessorCount };
    public Option<int> BatchSize { get; } = new("--batch-size", "--batch") { Description = "Face crops per face-stage batch (one batch is drawn on the device while the next fills).", DefaultValueFactory = _ => 8 };
    public Option<bool> DropSubtitles { get; } = new("--drop-subtitles")
    {
        Description = "Leave the input's subtitle streams out (by default they are copied where the output container can hold them).",
    };
    public Option<string?> AudioTranscode { get; } = new("--audio-transcode")
    {
        Description = "Re-encode the audio instead of copying it: opus (e.g. for .webm output from AAC input).",
    };
    public Option<string> Preset { get; } = new("--preset")
    {
        Description = "x264 preset of the output video: ultrafast, superfast, veryfast, faster, fast, medium (default), slow, slower, veryslow. Faster presets cost less CPU and give a larger file at the same --crf.",
        DefaultValueFactory = _ => "medium",
    };
    public Option<int?> Crf { get; } = new("--crf")
    {
        Description = "Constant quality of the output video, lower is better: 0..51 for H.264 (default 18, visually lossless), 0..63 for VP9/.webm (default 31).",
    };
    public Option<int> EncoderThreads { get; } = new("--encoder-threads")
    {
        Description = "Threads of the video encoder (0 = the encoder's own choice, the default).",
        DefaultValueFactory = _ => 0,
    };
    public Option<int> BatchTimeout { get; } = new("--batch-timeout")
    {
        Description = "Milliseconds after which a short face batch is sent anyway (0 = off: batches are cut by counts only, so reruns give identical pixels).",
        DefaultValueFactory = _ => 0,
    };
    public Option<int?> CropSize { get; } = new("--crop-size") { Description = "Aligned face crop size in pixels (default: 64 for blur, whose output has no finer detail; 256 otherwise; latent mode uses its generator's size)." };
    public Option<int> MaxMissing { get; } = new("--max-missing") { Description = "Frames a lost face is still followed before its region is only blurred.", DefaultValueFactory = _ => 10 };
    public Option<string> Device { get; } = new("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };
    public Option<string> Detector { get; } = new("--detector")
    {
        Description = "Face detector: hog (dlib), ssd (face-api.js SSD-MobileNetV1; needs `deid models fetch`) or both (a face either finds is processed).",
        DefaultValueFactory = _ => "hog",
    };
    public Option<float?> MinConfidence { get; } = new("--min-confidence")
    {
        Description = "SSD face score threshold, between 0 and 1 (ssd and both; default 0.5). Lower finds more faces, false ones included.",
    };

    public Option<string> Identity { get; } = new("--identity")
    {
        Description = "Latent mode: the replacement identity, seed:N (a synthetic person, one per track derived from N) or a photo (its largest face).",
        DefaultValueFactory = _ => "seed:0",
    };
    public Option<string[]> Track { get; } = new("--track")
    {
        Description = "Latent mode: pin a track's identity, ID=PHOTO or ID=seed:N (repeatable; track ids as in the --report).",
        AllowMultipleArgumentsPerToken = false,
    };
    public Option<double> Truncation { get; } = new("--truncation") { Description = "Latent mode: truncation psi of synthetic identities (1 = none).", DefaultValueFactory = _ => 0.7 };
    public Option<double> Margin { get; } = new("--identity-margin")
    {
        Description = "Latent mode: a synthetic identity must stay this far below the same-person threshold from every face of the clip, else the next seed is tried.",
        DefaultValueFactory = _ => 0.1,
    };
    public Option<string> WSmoothing { get; } = new("--w-smoothing") { Description = "Latent mode: One-Euro smoothing of each track's w over time, on or off.", DefaultValueFactory = _ => "on" };
    public Option<string?> WeightsDir { get; } = new("--weights-dir")
    {
        Description = "Latent mode: folder with E_attr.safetensors and M.safetensors (e.g. a `deid train` run's best/); G and E_id come from the model store unless it holds G.safetensors / E_id.safetensors.",
    };
    public Option<bool> RandomWeights { get; } = new("--random-weights")
    {
        Description = "Latent mode: build any missing network with seeded random weights (output faces are noise; for trying the pipeline before weights exist).",
    };
    public Option<string> RandomSize { get; } = new("--random-size")
    {
        Description = "With --random-weights: published (the method's real sizes) or small (narrow networks, for quick trials).",
        DefaultValueFactory = _ => "published",
    };

    public IEnumerable<Option> All =>
    [
        Mode, DropSubtitles, AudioTranscode, Preset, Crf, EncoderThreads, Workers, BatchSize, BatchTimeout, CropSize, MaxMissing, Device, Detector, MinConfidence,
        Identity, Track, Truncation, Margin, WSmoothing, WeightsDir, RandomWeights, RandomSize,
    ];

    public void AddTo(Command cmd)
    {
        foreach (var o in All) cmd.Options.Add(o);
    }

    /// <summary>True when the command line set <paramref name="option"/> (rather than its default).</summary>
    public static bool Given(ParseResult r, Option option) => r.GetResult(option) is { Implicit: false };

    /// <summary>
    /// The job the command line describes; throws <see cref="ArgumentException"/> (one line) for options that do not
    /// belong together. Also prints the random-weights warning and picks the process's memory setting for the job.
    /// </summary>
    public AnonymizeOptions Build(ParseResult r)
    {
        var options = new AnonymizeOptions
        {
            Mode = ParseMode(r.GetValue(Mode)),
            Workers = r.GetValue(Workers),
            BatchSize = r.GetValue(BatchSize),
            BatchTimeoutMs = r.GetValue(BatchTimeout),
            Output = new Deid.Media.VideoWriterOptions
            {
                DropSubtitles = r.GetValue(DropSubtitles), AudioTranscode = ParseTranscode(r.GetValue(AudioTranscode)),
                Preset = (r.GetValue(Preset) ?? "medium").Trim().ToLowerInvariant(), Crf = r.GetValue(Crf),
                Threads = r.GetValue(EncoderThreads) is > 0 and var t ? t : null,
            },
            CropSize = r.GetValue(CropSize),
            MaxMissingFrames = r.GetValue(MaxMissing),
            Device = r.GetValue(Device) ?? "cpu",
            Detector = FaceFinderFactory.Parse(r.GetValue(Detector)),
            Latent = new LatentOptions
            {
                Identity = r.GetValue(Identity) ?? "seed:0",
                TrackIdentities = ParseTracks(r.GetValue(Track) ?? []),
                Truncation = r.GetValue(Truncation),
                IdentityMargin = r.GetValue(Margin),
                WSmoothing = ParseOnOff(r.GetValue(WSmoothing), "--w-smoothing"),
                Weights = new Deid.Models.LatentWeightsSpec
                {
                    WeightsDir = r.GetValue(WeightsDir) is { } wd ? CheckWeightsDir(wd) : null,
                    RandomWeights = r.GetValue(RandomWeights),
                    RandomSize = ParseRandomSize(r.GetValue(RandomSize)),
                },
            },
        };
        // Checked here so a bad --preset, --crf or --encoder-threads is one line before any input is opened.
        if (r.GetValue(EncoderThreads) is < 0 or > 64) throw new ArgumentException($"--encoder-threads must be between 0 (automatic) and 64, got {r.GetValue(EncoderThreads)}");
        try { options.Output.Validate(); }
        catch (Deid.Media.MediaException e) { throw new ArgumentException(e.Message, e); }
        // Given, not GetResult: an option with a default has an (implicit) result even when the command line lacks it.
        if (options.Mode != AnonymizeMode.Latent && (Given(r, Identity) || Given(r, Track) || r.GetValue(RandomWeights) || Given(r, WeightsDir)))
            throw new ArgumentException("--identity, --track, --weights-dir and --random-weights belong to --mode latent");
        // Said at the start for a person watching; scripts get it as a warning line at the end and in the report
        // (a bad-input failure stays one line).
        if (options.Latent.Weights.RandomWeights && options.Mode == AnonymizeMode.Latent && !Console.IsErrorRedirected)
            Console.Error.WriteLine("deid: WARNING: --random-weights: networks without weight files get seeded RANDOM weights; the faces drawn are noise, not people");
        if (r.GetValue(MinConfidence) is float threshold)
        {
            if (options.Detector == DetectorKind.Hog)
                throw new ArgumentException("--min-confidence sets the SSD detector's threshold: use it with --detector ssd or both");
            options = options with { MinConfidence = threshold };
        }
        TuneMemoryFor(options);
        return options;
    }

    /// <summary>
    /// The SSD detector runs libtorch every frame: measured 2x faster with the tensor setting, for about 1 GB more peak
    /// memory (flat with clip length). See NativeMemory.TuneForTensors.
    /// </summary>
    public static void TuneMemoryFor(AnonymizeOptions options)
    {
        if (options.Detector != DetectorKind.Hog || options.Mode == AnonymizeMode.Latent) Deid.Media.NativeMemory.TuneForTensors();
    }

    private static AnonymizeMode ParseMode(string? s) => (s ?? "blur").Trim().ToLowerInvariant() switch
    {
        "blur" => AnonymizeMode.Blur,
        "pixelate" => AnonymizeMode.Pixelate,
        "passthrough" => AnonymizeMode.Passthrough,
        "latent" => AnonymizeMode.Latent,
        _ => throw new ArgumentException($"unknown mode '{s}' (expected blur, pixelate, passthrough or latent)"),
    };

    /// <summary>"2=photo.jpg" or "3=seed:9" → track id → identity.</summary>
    public static IReadOnlyDictionary<int, string> ParseTracks(IEnumerable<string> pairs)
    {
        var result = new Dictionary<int, string>();
        foreach (var p in pairs)
        {
            var eq = p.IndexOf('=');
            if (eq <= 0 || eq == p.Length - 1 || !int.TryParse(p.AsSpan(0, eq), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id) || id < 1)
                throw new ArgumentException($"--track '{p}' is not ID=PHOTO or ID=seed:N (ID a track number from 1)");
            if (!result.TryAdd(id, p[(eq + 1)..])) throw new ArgumentException($"--track names track {id} twice");
        }
        return result;
    }

    private static string? ParseTranscode(string? s)
    {
        var t = s?.Trim().ToLowerInvariant();
        return t == null || Deid.Media.VideoWriterOptions.AudioTranscodeCodecs.Contains(t) ? t
            : throw new ArgumentException($"unknown --audio-transcode '{s}' (expected {string.Join(", ", Deid.Media.VideoWriterOptions.AudioTranscodeCodecs)})");
    }

    internal static bool ParseOnOff(string? s, string option) => (s ?? "on").Trim().ToLowerInvariant() switch
    {
        "on" or "true" or "yes" => true,
        "off" or "false" or "no" => false,
        _ => throw new ArgumentException($"{option} takes on or off (got '{s}')"),
    };

    internal static Deid.Models.RandomWeightsSize ParseRandomSize(string? s) => (s ?? "published").Trim().ToLowerInvariant() switch
    {
        "published" => Deid.Models.RandomWeightsSize.Published,
        "small" => Deid.Models.RandomWeightsSize.Small,
        _ => throw new ArgumentException($"--random-size takes published or small (got '{s}')"),
    };

    internal static string CheckWeightsDir(string dir) =>
        Directory.Exists(dir) ? Path.GetFullPath(dir) : throw new ArgumentException($"--weights-dir: folder not found: {dir}");
}
