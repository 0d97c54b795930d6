using System.Diagnostics;
using System.Globalization;
using OpenCvSharp;

namespace Deid.Media;

public sealed record VideoWriterOptions
{
    public string Codec { get; init; } = "libx264";
    public int Crf { get; init; } = 18;
    public string Preset { get; init; } = "medium";
    /// <summary>Output pixel format (players expect yuv420p).</summary>
    public string PixelFormat { get; init; } = "yuv420p";
}

/// <summary>
/// Encodes upright BGR frames back into a file like the source: same size, time base and per-frame timestamps
/// (VFR kept), the source's audio streams copied packet for packet, and — for mp4/mov — the frames stored in the
/// source's orientation with its rotation tag, so the file decodes and displays exactly as the source did.
/// (Matroska has no rotation tag ffmpeg 5.1 writes, so there the frames are stored upright instead; the display is the same.)
/// Everything goes to a temp file beside the output, renamed over it by <see cref="Complete"/>.
/// </summary>
public sealed class VideoWriter : IDisposable
{
    private readonly VideoWriterSpec _source;
    private readonly VideoWriterOptions _options;
    private readonly string _output;
    private readonly string _temp;
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

    /// <summary>Validates the output path (not the input, directory exists and is writable) → <see cref="MediaException"/>.</summary>
    public VideoWriter(string outputPath, VideoInfo source, VideoWriterOptions? options = null)
        : this(outputPath, VideoWriterSpec.From(source), options) { }

    /// <summary>Frames of <paramref name="spec"/>'s size and timing, with its audio source's audio; validates the path as above.</summary>
    public VideoWriter(string outputPath, VideoWriterSpec spec, VideoWriterOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Width <= 0 || spec.Height <= 0) throw new MediaException($"cannot write {spec.Width}x{spec.Height} frames");
        OutputPaths.Validate(spec.AudioSource ?? "", outputPath);
        _source = spec;
        _options = options ?? new VideoWriterOptions();
        _output = Path.GetFullPath(outputPath);
        _temp = OutputPaths.TempPathFor(_output);
    }

    public string OutputPath => _output;

    /// <summary>Where the file is being written until <see cref="Complete"/> renames it.</summary>
    public string TempPath => _temp;

    public long FramesWritten => _count;

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

    /// <summary>Without <see cref="Complete"/>: stops ffmpeg and deletes the temp file, leaving no output.</summary>
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
        var ext = Path.GetExtension(_output).ToLowerInvariant();
        var isMov = ext is ".mp4" or ".mov" or ".m4v";
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
        args.AddRange(["-f", "matroska", "-i", "pipe:0"]);
        if (_source.HasAudio) args.AddRange(["-i", _source.AudioSource!]);
        args.AddRange(["-map", "0:v:0"]);
        if (_source.HasAudio)
        {
            foreach (var a in _source.AudioStreams) args.AddRange(["-map", "1:" + a.Index.ToString(inv)]);
            args.AddRange(["-c:a", "copy"]);
        }
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
            "-c:v", _options.Codec, "-pix_fmt", _options.PixelFormat,
            "-fps_mode", "passthrough",
            "-enc_time_base", tb.ToString(),
        ]);
        if (_options.Codec.Contains("264", StringComparison.Ordinal) || _options.Codec.Contains("265", StringComparison.Ordinal) ||
            _options.Codec.Contains("hevc", StringComparison.Ordinal))
            args.AddRange(["-crf", _options.Crf.ToString(inv), "-preset", _options.Preset]);
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
