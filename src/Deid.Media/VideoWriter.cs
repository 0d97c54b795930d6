using System.Diagnostics;
using System.Globalization;
using OpenCvSharp;

namespace Deid.Media;

public sealed record VideoWriterOptions
{
    /// <summary>Video encoder; null picks libx264, or libvpx-vp9 for .webm.</summary>
    public string? Codec { get; init; }
    /// <summary>Constant quality (lower is better; x264/x265 0..51, VP9 0..63); null picks 18 for x264/x265, 31 for VP9.</summary>
    public int? Crf { get; init; }
    /// <summary>
    /// x264 preset (<see cref="Presets"/>): faster ones cost the encoder less CPU for a larger file at the same CRF.
    /// For VP9, ultrafast..veryfast pick the realtime deadline, anything else "good".
    /// </summary>
    public string Preset { get; init; } = "medium";
    /// <summary>Encoder threads; null lets the encoder choose (x264: about 1.5 per core).</summary>
    public int? Threads { get; init; }

    /// <summary>The x264 presets, fastest first.</summary>
    public static IReadOnlyList<string> Presets { get; } =
        ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"];

    /// <summary>One-line <see cref="MediaException"/> for a preset, CRF or thread count the encoders do not take.</summary>
    public void Validate()
    {
        if (!Presets.Contains(Preset))
            throw new MediaException($"unknown encoder preset '{Preset}' (expected one of {string.Join(", ", Presets)})");
        if (Crf is < 0 or > 63) throw new MediaException($"crf must be between 0 and 51 (x264) or 63 (VP9), got {Crf}");
        if (Threads is < 0 or > 64) throw new MediaException($"encoder threads must be between 0 (automatic) and 64, got {Threads}");
    }
    /// <summary>
    /// Output pixel format; null keeps the source's chroma subsampling (8-bit) where the encoder and the frame size
    /// allow it: 4:2:0 needs an even width and height, 4:2:2 an even width, so an odd size is encoded 4:4:4 instead
    /// of being padded or scaled (see <see cref="VideoWriter.OutputPixelFormat"/>).
    /// </summary>
    public string? PixelFormat { get; init; }
    /// <summary>Leave the source's subtitle streams out (they are copied by default where the container can hold them).</summary>
    public bool DropSubtitles { get; init; }
    /// <summary>null copies every audio stream as is; "opus" re-encodes them with libopus (e.g. AAC into .webm).</summary>
    public string? AudioTranscode { get; init; }

    /// <summary>Audio codecs <see cref="AudioTranscode"/> accepts.</summary>
    public static IReadOnlyList<string> AudioTranscodeCodecs { get; } = ["opus"];
}

/// <summary>
/// Writer options and warnings for code that creates its <see cref="VideoWriter"/> without passing options (the
/// pipeline today): a <see cref="VideoWriter"/> constructed with null options inside <see cref="Begin"/>'s scope (same
/// async flow) uses <see cref="Options"/> and adds its <see cref="VideoWriter.Warnings"/> here.
/// </summary>
public sealed class VideoWriterScope : IDisposable
{
    private static readonly AsyncLocal<VideoWriterScope?> CurrentScope = new();
    private readonly VideoWriterScope? _outer;
    private readonly List<string> _warnings = [];

    private VideoWriterScope(VideoWriterOptions options)
    {
        Options = options;
        _outer = CurrentScope.Value;
        CurrentScope.Value = this;
    }

    public static VideoWriterScope Begin(VideoWriterOptions options) => new(options ?? throw new ArgumentNullException(nameof(options)));

    internal static VideoWriterScope? Current => CurrentScope.Value;

    public VideoWriterOptions Options { get; }

    public IReadOnlyList<string> Warnings { get { lock (_warnings) return _warnings.ToList(); } }

    internal void AddWarnings(IEnumerable<string> warnings) { lock (_warnings) _warnings.AddRange(warnings); }

    public void Dispose() { if (CurrentScope.Value == this) CurrentScope.Value = _outer; }
}

/// <summary>
/// Encodes upright BGR frames back into a file like the source: same size, time base and per-frame timestamps
/// (VFR kept), the source's audio streams copied packet for packet, its subtitle and attachment streams copied where
/// the container can hold them (<see cref="Warnings"/> says what could not be), and — for mp4/mov — the frames stored
/// in the source's orientation with its rotation tag, so the file decodes and displays exactly as the source did.
/// (Matroska/WebM have no rotation tag ffmpeg 5.1 writes, so there the frames are stored upright instead; the display is the same.)
/// Everything goes to a temp file beside the output, renamed over it by <see cref="Complete"/>; the output path is
/// locked (<see cref="OutputLock"/>) from the constructor to <see cref="Dispose"/>, so a second writer for the same
/// path fails at once instead of mixing files.
/// </summary>
public sealed class VideoWriter : IDisposable
{
    private static readonly string[] TextSubtitles = ["subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text", "microdvd", "subviewer", "subviewer1", "sami", "realtext", "jacosub", "mpl2", "pjs", "vplayer", "stl"];

    private readonly VideoInfo _source;
    private readonly VideoWriterOptions _options;
    private readonly string _output;
    private readonly string _temp;
    private readonly Container _container;
    private readonly string _codec;
    private readonly List<string> _streamArgs = [];
    private readonly bool _needsSourceInput;
    private readonly List<string> _warnings = [];
    private readonly OutputLock _lock;
    // ffmpeg 5.1 only writes a rotation tag when stream-copying: rotated output is encoded here first, then remuxed into _temp
    private string? _encodeTemp;
    private readonly StderrTail _tail = new(40);
    private Process? _proc;
    private Task? _stderrTask;
    private MatroskaRawWriter? _mkv;
    private Stream? _stdin;
    private long _firstPts;
    private long _lastPts = long.MinValue;
    private long _count;
    private bool _completed;
    private bool _disposed;

    private enum Container { Mov, Matroska, WebM }

    /// <summary>
    /// Validates the output path (not the input, directory exists and is writable) and that the container can hold
    /// the source's audio, then takes the output's lock → <see cref="MediaException"/>. With null options, a
    /// <see cref="VideoWriterScope"/> of this async flow supplies them.
    /// </summary>
    public VideoWriter(string outputPath, VideoWriterSpec spec, VideoWriterOptions? options = null)
        : this(outputPath, spec.ToWriterInfo(), options) { }

    public VideoWriter(string outputPath, VideoInfo source, VideoWriterOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        OutputPaths.Validate(source.Path, outputPath);
        var scope = options == null ? VideoWriterScope.Current : null;
        _source = source;
        _options = options ?? scope?.Options ?? new VideoWriterOptions();
        _options.Validate();
        _output = Path.GetFullPath(outputPath);
        _container = ContainerOf(_output);
        _codec = _options.Codec ?? (_container == Container.WebM ? "libvpx-vp9" : "libx264");
        if (_options.Crf > 51 && !_codec.Contains("vp9", StringComparison.Ordinal))
            throw new MediaException($"crf must be between 0 and 51 for {_codec}, got {_options.Crf}");
        _needsSourceInput = PlanStreams();
        scope?.AddWarnings(_warnings);
        _lock = OutputLock.Acquire(_output);
        _temp = OutputPaths.TempPathFor(_output);
    }

    public string OutputPath => _output;

    /// <summary>Where the file is being written until <see cref="Complete"/> renames it.</summary>
    public string TempPath => _temp;

    public long FramesWritten => _count;

    /// <summary>What the output will lack or change compared with the source (subtitles or attachments the container cannot hold), one line each.</summary>
    public IReadOnlyList<string> Warnings => _warnings;

    /// <summary>The pixel format the video is encoded in.</summary>
    private bool IsX264Family => _codec.Contains("264", StringComparison.Ordinal) || _codec.Contains("265", StringComparison.Ordinal) ||
        _codec.Contains("hevc", StringComparison.Ordinal);

    /// <summary>x264's rc-lookahead of each preset (frames), as x264 sets it.</summary>
    private static readonly Dictionary<string, int> PresetLookahead = new()
    {
        ["ultrafast"] = 0, ["superfast"] = 0, ["veryfast"] = 10, ["faster"] = 20, ["fast"] = 30,
        ["medium"] = 40, ["slow"] = 50, ["slower"] = 60, ["veryslow"] = 60, ["placebo"] = 60,
    };

    /// <summary>Bytes of encoder lookahead the writer allows; x264 holds about two frame-sized buffers per lookahead frame.</summary>
    public const long LookaheadBudgetBytes = 256L << 20;

    /// <summary>
    /// The rc-lookahead to ask x264 for, or null to keep the preset's: x264 buffers its lookahead in full frames, so
    /// at 4K medium's 40 frames cost the encoder about 1 GB on their own. Large frames get as many lookahead frames as
    /// <see cref="LookaheadBudgetBytes"/> holds (at least 10, veryfast's own), small ones keep the preset's.
    /// </summary>
    public static int? Lookahead(string preset, int width, int height)
    {
        if (!PresetLookahead.TryGetValue(preset, out var own) || own <= 10) return null;
        var perFrame = 2L * width * height * 3 / 2;
        var fits = (int)Math.Clamp(LookaheadBudgetBytes / Math.Max(1, perFrame), 10, int.MaxValue);
        return fits < own ? fits : null;
    }

    public string PixelFormat => _options.PixelFormat ?? OutputPixelFormat(_source.PixelFormat, StoredWidth, StoredHeight, _codec);

    private int StoredWidth => _container == Container.Mov ? _source.CodedWidth : _source.Width;
    private int StoredHeight => _container == Container.Mov ? _source.CodedHeight : _source.Height;

    /// <summary>
    /// The 8-bit pixel format that keeps <paramref name="sourcePixelFormat"/>'s chroma subsampling (4:2:0, 4:2:2 or 4:4:4;
    /// RGB and unknown formats count as 4:4:4 and 4:2:0 respectively), unless the stored size does not allow it: 4:2:0
    /// needs an even width and height, 4:2:2 an even width; such sizes get 4:4:4, so the output keeps the exact size.
    /// </summary>
    public static string OutputPixelFormat(string sourcePixelFormat, int width, int height, string codec = "libx264")
    {
        var f = (sourcePixelFormat ?? "").ToLowerInvariant();
        var chroma = f.StartsWith("yuv444", StringComparison.Ordinal) || f.StartsWith("yuvj444", StringComparison.Ordinal)
                     || f.StartsWith("gbr", StringComparison.Ordinal) || f.StartsWith("rgb", StringComparison.Ordinal)
                     || f.StartsWith("bgr", StringComparison.Ordinal) || f is "argb" or "abgr" or "0rgb" or "0bgr" ? 444
            : f.StartsWith("yuv422", StringComparison.Ordinal) || f.StartsWith("yuvj422", StringComparison.Ordinal)
              || f is "nv16" or "yuyv422" or "uyvy422" or "yvyu422" or "p210le" or "p216le" ? 422
            : 420;
        if (chroma == 420 && (width % 2 != 0 || height % 2 != 0)) chroma = 444;
        if (chroma == 422 && width % 2 != 0) chroma = 444;
        return chroma switch { 444 => "yuv444p", 422 => "yuv422p", _ => "yuv420p" };
    }

    private static Container ContainerOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".mkv" => Container.Matroska,
        ".webm" => Container.WebM,
        _ => Container.Mov,
    };

    private static bool IsText(string codec) => TextSubtitles.Contains(codec, StringComparer.OrdinalIgnoreCase);

    /// <summary>Maps of input 1 (the source) and their codecs; throws when the container cannot hold the audio. True when input 1 is needed.</summary>
    private bool PlanStreams()
    {
        var inv = CultureInfo.InvariantCulture;
        var ext = Path.GetExtension(_output).ToLowerInvariant();
        var transcode = _options.AudioTranscode?.Trim().ToLowerInvariant();
        if (transcode != null && !VideoWriterOptions.AudioTranscodeCodecs.Contains(transcode))
            throw new MediaException($"unknown audio transcode codec '{_options.AudioTranscode}' (expected {string.Join(", ", VideoWriterOptions.AudioTranscodeCodecs)})");
        var used = false;
        if (_source.HasAudio)
        {
            // a damaged header can leave a stream ffmpeg cannot name or size: it can be neither copied nor decoded
            foreach (var a in _source.AudioStreams)
                if (a.Codec is "unknown" or "none" || a.Channels <= 0 || a.SampleRate <= 0)
                    throw new MediaException(
                        $"audio stream {a.Index} of {_source.Path} is damaged or in an unknown format (codec {a.Codec}, {a.Channels} channels, {a.SampleRate} Hz), so it cannot be kept: the input is corrupt");
            if (transcode == null)
                foreach (var a in _source.AudioStreams)
                    if (AudioProblem(a.Codec, ext) is { } why)
                        throw new MediaException(
                            $"cannot copy audio stream {a.Index} ({a.Codec}) into {ext}: {why}; write .mkv instead (it holds any audio as is), or pass --audio-transcode opus");
            foreach (var a in _source.AudioStreams) _streamArgs.AddRange(["-map", "1:" + a.Index.ToString(inv)]);
            if (transcode == "opus") _streamArgs.AddRange(["-c:a", "libopus", "-b:a", "128k"]);
            else _streamArgs.AddRange(["-c:a", "copy"]);
            used = true;
        }

        if (!_options.DropSubtitles)
        {
            var k = 0;
            foreach (var sub in _source.SubtitleStreams)
            {
                var what = $"subtitle stream {sub.Index} ({sub.Codec})";
                string? codec;
                switch (_container)
                {
                    case Container.Matroska:
                        codec = "copy";
                        break;
                    case Container.WebM:
                        codec = sub.Codec == "webvtt" ? "copy" : IsText(sub.Codec) ? "webvtt" : null;
                        if (codec == null) _warnings.Add($"{what} was left out: {ext} holds only WebVTT text subtitles, not picture ones (write .mkv to keep it)");
                        else if (sub.Codec is "ass" or "ssa") _warnings.Add($"{what} was converted to WebVTT: its styling is lost (write .mkv to keep it as is)");
                        break;
                    default:
                        codec = sub.Codec == "mov_text" ? "copy" : IsText(sub.Codec) ? "mov_text" : null;
                        if (codec == null) _warnings.Add($"{what} was left out: {ext} holds only timed-text subtitles, not picture ones (write .mkv to keep it)");
                        else if (sub.Codec is "ass" or "ssa") _warnings.Add($"{what} was converted to mov_text: its styling is lost (write .mkv to keep it as is)");
                        break;
                }
                if (codec == null) continue;
                _streamArgs.AddRange(["-map", "1:" + sub.Index.ToString(inv), "-c:s:" + k.ToString(inv), codec]);
                k++;
                used = true;
            }
        }

        if (_source.AttachmentStreams.Count > 0)
        {
            if (_container == Container.Matroska)
            {
                foreach (var t in _source.AttachmentStreams) _streamArgs.AddRange(["-map", "1:" + t.Index.ToString(inv)]);
                _streamArgs.AddRange(["-c:t", "copy"]);
                used = true;
            }
            else
                foreach (var t in _source.AttachmentStreams)
                    _warnings.Add($"attachment stream {t.Index} ({t.FileName ?? t.Codec}) was left out: {ext} cannot hold attachments (write .mkv to keep it)");
        }
        return used;
    }

    /// <summary>Why <paramref name="codec"/> audio cannot be stream-copied into <paramref name="ext"/>, or null when it can (as far as is known).</summary>
    private static string? AudioProblem(string codec, string ext) => ext switch
    {
        ".webm" when codec is not ("opus" or "vorbis") => "WebM holds only Opus or Vorbis audio",
        ".mp4" or ".m4v" when codec.StartsWith("pcm_", StringComparison.Ordinal) || codec is "vorbis" or "wmav1" or "wmav2" or "cook" or "ra_144" or "ra_288"
            => "MP4 cannot hold it",
        _ => null,
    };

    /// <summary>Frames in presentation order, upright, Width x Height BGR; each keeps its <see cref="VideoFrame.Pts"/>.</summary>
    public void Write(VideoFrame frame)
    {
        ArgumentNullException.ThrowIfNull(frame);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed) throw new InvalidOperationException("the video writer is already complete");
        var img = frame.Image ?? throw new ArgumentException("frame has no image", nameof(frame));
        if (img.Width != _source.Width || img.Height != _source.Height || img.Type() != MatType.CV_8UC3)
            throw new MediaException($"frame {frame.Index} is {img.Width}x{img.Height} {img.Type()}, expected {_source.Width}x{_source.Height} CV_8UC3 BGR");
        if (_count > 0 && frame.Pts <= _lastPts)
            throw new MediaException($"frame {frame.Index} has timestamp {frame.Pts}, not after the previous frame's {_lastPts} (frames must be written in presentation order)");
        if (_proc == null) Start(frame.Pts);
        var ns = Rational.Rescale(frame.Pts - _firstPts, _source.TimeBase, new Rational(1, 1_000_000_000));
        try
        {
            _mkv!.WriteFrame(img, (ulong)ns);
        }
        catch (IOException e)
        {
            throw Failure("ffmpeg stopped accepting frames", e);
        }
        _lastPts = frame.Pts;
        _count++;
    }

    /// <summary>Flushes the encoder, muxes the audio, and atomically renames the temp file to the output path.</summary>
    public void Complete()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed) return;
        if (_proc == null) throw new MediaException("no frames were written, so there is no video to save");
        try
        {
            _stdin!.Flush();
            _stdin.Close();
        }
        catch (IOException e)
        {
            throw Failure("ffmpeg failed while finishing the video", e);
        }
        _proc.WaitForExit();
        _stderrTask?.Wait(TimeSpan.FromSeconds(10));
        if (_proc.ExitCode != 0) throw Failure($"ffmpeg failed to encode {_output}", null);
        if (_encodeTemp != null)
        {
            var inv = CultureInfo.InvariantCulture;
            var r = FfTools.Run(FfTools.Ffmpeg, ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y", "-i", _encodeTemp,
                "-map", "0", "-c", "copy",
                // the tag's sign convention in ffmpeg 5.1 is opposite to ffprobe's (counter-clockwise) rotation
                "-metadata:s:v:0", "rotate=" + ((360 - _source.Rotation) % 360).ToString(inv),
                "-movflags", "+faststart", _temp]);
            TryDelete(_encodeTemp);
            if (r.Code != 0)
            {
                TryDelete(_temp);
                throw new MediaException($"ffmpeg failed to restore the rotation of {_output}: {FfTools.Summarize(r.StdErr)}");
            }
        }
        if (!File.Exists(_temp)) throw Failure($"ffmpeg wrote no output for {_output}", null);
        try
        {
            File.Move(_temp, _output, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MediaException($"cannot move the finished video into place at {_output}: {e.Message}", e);
        }
        _completed = true;
    }

    /// <summary>Without <see cref="Complete"/>: stops ffmpeg and deletes the temp file, leaving no output. Releases the output's lock.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try { _stdin?.Dispose(); } catch (IOException) { }
        if (_proc != null)
        {
            FfTools.Stop(_proc);
            _proc.Dispose();
        }
        if (!_completed) DeleteTemp();
        _lock.Dispose();
    }

    private void DeleteTemp()
    {
        TryDelete(_temp);
        if (_encodeTemp != null) TryDelete(_encodeTemp);
    }

    private static void TryDelete(string path)
    {
        try { if (File.Exists(path)) File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    private MediaException Failure(string what, Exception? inner)
    {
        if (_proc != null) FfTools.Stop(_proc);
        _stderrTask?.Wait(TimeSpan.FromSeconds(5));
        DeleteTemp();
        return new MediaException($"{what}: {FfTools.Summarize(_tail.Text)}", inner);
    }

    private void Start(long firstPts)
    {
        // Matroska cluster timestamps are unsigned: the stream starts at 0 and -itsoffset puts it back at firstPts
        _firstPts = firstPts;
        var isMov = _container == Container.Mov;
        var rotation = isMov ? _source.Rotation : 0;
        var tb = _source.TimeBase.Reduce();
        var inv = CultureInfo.InvariantCulture;
        var args = new List<string>
        {
            "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+error", "-y",
            // keep timestamps as given (ffmpeg would shift each input to start at 0): video pts and audio packets stay aligned as in the source
            "-copyts",
        };
        if (firstPts != 0)
        {
            var offsetUs = Rational.Rescale(firstPts, tb, new Rational(1, 1_000_000));
            args.AddRange(["-itsoffset", (offsetUs / 1e6).ToString("0.######", inv)]);
        }
        // Large frames: ffmpeg's input queue (8 packets) alone would hold 200 MB of raw 4K frames.
        var bigFrames = IsX264Family && Lookahead(_options.Preset, _source.Width, _source.Height) != null;
        if (bigFrames) args.AddRange(["-thread_queue_size", "2"]);
        args.AddRange(["-f", "matroska", "-i", "pipe:0"]);
        if (_needsSourceInput) args.AddRange(["-i", _source.Path]);
        args.AddRange(["-map", "0:v:0"]);
        args.AddRange(_streamArgs);
        // file-level tags (GPS location, device, creation time) could identify the person: not carried over
        args.AddRange(["-map_metadata:g", "-1"]);
        // back to the stored orientation: the player's clockwise turn by `rotation` must give the upright frames again
        var filter = rotation switch
        {
            90 => "transpose=cclock",
            180 => "hflip,vflip",
            270 => "transpose=clock",
            _ => null,
        };
        if (filter != null) args.AddRange(["-vf", filter]);
        args.AddRange([
            "-c:v", _codec, "-pix_fmt", PixelFormat,
            "-fps_mode", "passthrough",
            "-enc_time_base", tb.ToString(),
        ]);
        if (IsX264Family)
        {
            args.AddRange(["-crf", (_options.Crf ?? 18).ToString(inv), "-preset", _options.Preset]);
            // sync-lookahead=0: the threaded lookahead's own frame buffers are the next largest holder at 4K.
            if (Lookahead(_options.Preset, _source.Width, _source.Height) is int frames && _codec.Contains("264", StringComparison.Ordinal))
                args.AddRange(["-rc-lookahead", frames.ToString(inv), "-x264-params", "sync-lookahead=0"]);
        }
        else if (_codec.Contains("vp9", StringComparison.Ordinal))
        {
            var fast = _options.Preset is "ultrafast" or "superfast" or "veryfast";
            args.AddRange(["-crf", (_options.Crf ?? 31).ToString(inv), "-b:v", "0", "-row-mt", "1",
                "-deadline", fast ? "realtime" : "good", "-cpu-used", fast ? "8" : "4"]);
        }
        if (_options.Threads is int threads and > 0) args.AddRange(["-threads:v", threads.ToString(inv)]);
        if (isMov)
        {
            if (tb.Num == 1 && tb.Den <= int.MaxValue) args.AddRange(["-video_track_timescale", tb.Den.ToString(inv)]);
            if (rotation == 0) args.AddRange(["-movflags", "+faststart"]);
        }
        if (rotation != 0) _encodeTemp = OutputPaths.TempPathFor(_output);
        args.Add(_encodeTemp ?? _temp);

        _proc = FfTools.Start(FfTools.Ffmpeg, args, stdin: true, stdout: false);
        var proc = _proc;
        _stderrTask = Task.Run(() =>
        {
            try
            {
                while (proc.StandardError.ReadLine() is { } line) _tail.Add(line);
            }
            catch (IOException) { }
            catch (ObjectDisposedException) { }
        });
        _stdin = proc.StandardInput.BaseStream;
        var defaultNs = _source.FrameRate.IsValid ? Rational.Rescale(1, _source.FrameRate.Invert(), new Rational(1, 1_000_000_000)) : 0;
        try
        {
            _mkv = new MatroskaRawWriter(_stdin, _source.Width, _source.Height, defaultNs);
        }
        catch (IOException e)
        {
            throw Failure("ffmpeg could not start encoding", e);
        }
    }
}
