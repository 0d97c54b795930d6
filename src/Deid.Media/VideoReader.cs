using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using OpenCvSharp;

namespace Deid.Media;

/// <summary>
/// Decodes a video into upright BGR frames with a plain ffmpeg process: raw bgr24 on stdout, and each frame's exact
/// pts from the showinfo filter on stderr (same pass, so timestamps always pair with the right picture).
/// </summary>
public sealed partial class VideoReader : IDisposable
{
    private readonly List<Process> _running = [];
    private bool _disposed;

    public VideoReader(string path) : this(MediaProbe.Probe(path)) { }

    /// <summary>Reads a file already probed: each probe is two ffprobe runs (~0.15 s of CPU each, mostly dynamic linking).</summary>
    public VideoReader(VideoInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        Info = info;
    }

    public VideoInfo Info { get; }

    /// <summary>
    /// Frames in presentation order; none dropped or duplicated. The caller disposes each frame. Breaking out of the
    /// loop or cancelling stops ffmpeg. Throws <see cref="MediaException"/> if decoding fails or the file ends early.
    /// </summary>
    public IEnumerable<VideoFrame> ReadFrames(CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Enumerate(ct);
    }

    private IEnumerable<VideoFrame> Enumerate(CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var info = Info;
        string[] args =
        [
            "-hide_banner", "-nostdin", "-nostats", "-loglevel", "repeat+level+info",
            // keep the file's own timestamps (ffmpeg would otherwise shift them to start at 0)
            "-copyts",
            "-i", info.Path,
            "-map", "0:" + info.VideoStreamIndex.ToString(CultureInfo.InvariantCulture),
            "-an", "-sn", "-dn",
            // autorotate (ffmpeg's default) turns the frames upright before this filter
            "-vf", "showinfo=checksum=0",
            "-fps_mode", "passthrough",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1",
        ];
        var proc = FfTools.Start(FfTools.Ffmpeg, args, stdin: false, stdout: true);
        lock (_running) _running.Add(proc);
        var tail = new StderrTail();
        var ptsQueue = new BlockingCollection<(long? Pts, bool Corrupt, bool Key)>();
        // written before the first frame line is queued, so the queue's barrier publishes it
        var filterTb = new Rational[] { info.TimeBase };
        var partial = false;
        // ffmpeg logs "corrupt decoded frame" as the decoder hands the picture on, just before the filter (showinfo) sees it
        var corrupt = false;
        var stderrTask = Task.Run(() =>
        {
            try
            {
                while (proc.StandardError.ReadLine() is { } line)
                {
                    var m = ShowInfoFrame().Match(line);
                    if (m.Success)
                    {
                        var key = ShowInfoKey().Match(line);
                        ptsQueue.Add((m.Groups[1].Value == "NOPTS" ? null : long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture),
                            corrupt, key.Success && key.Groups[1].Value == "1"));
                        corrupt = false;
                        continue;
                    }
                    if (line.Contains("corrupt decoded frame", StringComparison.Ordinal))
                    {
                        corrupt = true;
                        continue;
                    }
                    var tbm = ShowInfoTimeBase().Match(line);
                    if (tbm.Success && Rational.TryParse(tbm.Groups[1].Value, out var tb) && tb.IsValid)
                    {
                        filterTb[0] = tb;
                        continue;
                    }
                    if (line.Contains("[error]", StringComparison.Ordinal) || line.Contains("[fatal]", StringComparison.Ordinal) ||
                        line.Contains("[panic]", StringComparison.Ordinal))
                    {
                        if (line.Contains("partial file", StringComparison.OrdinalIgnoreCase)) partial = true;
                        tail.Add(line);
                    }
                }
            }
            catch (IOException) { }
            catch (ObjectDisposedException) { }
            finally { ptsQueue.CompleteAdding(); }
        });
        using var reg = ct.Register(() => FfTools.Stop(proc));

        var w = info.Width;
        var h = info.Height;
        var frameBytes = checked(w * h * 3);
        var stdout = proc.StandardOutput.BaseStream;
        // without a pts (rare), continue from the previous one by one nominal frame duration
        var step = Math.Max(1, Rational.Rescale(1, info.FrameRate.Invert(), info.TimeBase));
        long index = 0;
        long lastPts = long.MinValue;
        // Damage travels with inter prediction: every picture after a damaged one is suspect until the next key frame.
        var damaged = false;
        using var pool = new FramePool(w, h);
        try
        {
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                var mat = pool.Rent();
                int got;
                try { got = ReadInto(stdout, mat, frameBytes); }
                catch { mat.Dispose(); throw; }
                if (got < frameBytes)
                {
                    mat.Dispose();
                    ct.ThrowIfCancellationRequested();
                    if (got > 0) throw new MediaException($"decoding stopped in the middle of frame {index} of {info.Path}");
                    break;
                }
                long? raw = null;
                try
                {
                    if (ptsQueue.TryTake(out var p, Timeout.Infinite, ct))
                    {
                        raw = p.Pts;
                        damaged = p.Corrupt || (damaged && !p.Key);
                    }
                }
                catch (OperationCanceledException) { mat.Dispose(); throw; }
                long pts = raw is { } rp ? Rational.Rescale(rp, filterTb[0], info.TimeBase)
                    : lastPts == long.MinValue ? 0 : lastPts + step;
                lastPts = pts;
                var time = TimeSpan.FromTicks(Rational.Rescale(pts, info.TimeBase, new Rational(1, TimeSpan.TicksPerSecond)));
                yield return new VideoFrame(index++, pts, time, mat) { Damaged = damaged, Recycle = pool.Return };
            }
            proc.WaitForExit();
            stderrTask.Wait(TimeSpan.FromSeconds(10));
            ct.ThrowIfCancellationRequested();
            if (proc.ExitCode != 0)
                throw new MediaException($"ffmpeg failed to decode {info.Path}: {FfTools.Summarize(tail.Text)}");
            if (partial)
                throw new MediaException($"input video is truncated (its end is missing): {info.Path}");
            if (index == 0)
                throw new MediaException($"no video frame could be decoded from {info.Path}");
        }
        finally
        {
            FfTools.Stop(proc);
            lock (_running) _running.Remove(proc);
            proc.Dispose();
            ptsQueue.Dispose();
        }
    }

    /// <summary>Fills the Mat's pixels straight from the pipe; returns the bytes read (less only at end of stream).</summary>
    private static unsafe int ReadInto(Stream s, Mat mat, int count)
    {
        var span = new Span<byte>((void*)mat.Data, count);
        var total = 0;
        while (total < count)
        {
            var n = s.Read(span[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Process[] procs;
        lock (_running) procs = [.. _running];
        foreach (var p in procs) FfTools.Stop(p);
    }

    /// <summary>
    /// Frame buffers handed back by disposed frames, for the next frames of the same read. A fresh frame-sized buffer
    /// is a fresh mapping whose every page the kernel faults in and zeroes as the pipe fills it; the same few buffers
    /// going round cost nothing of that. Never more buffers live than frames were once in flight, so peak memory is
    /// what it was; buffers handed back after the read ends (or not matching its frames) are disposed.
    /// </summary>
    private sealed class FramePool(int width, int height) : IDisposable
    {
        private const int MaxIdle = 64;
        private readonly ConcurrentQueue<Mat> _idle = new();
        private volatile bool _closed;

        public Mat Rent() => _idle.TryDequeue(out var m) ? m : new Mat(height, width, MatType.CV_8UC3);

        public void Return(Mat m)
        {
            if (_closed || m.IsDisposed || m.Width != width || m.Height != height || m.Type() != MatType.CV_8UC3
                || !m.IsContinuous() || m.IsSubmatrix() || _idle.Count >= MaxIdle)
            {
                m.Dispose();
                return;
            }
            _idle.Enqueue(m);
            // Closed meanwhile: Dispose may have drained the queue before this buffer arrived.
            if (_closed) Drain();
        }

        public void Dispose()
        {
            _closed = true;
            Drain();
        }

        private void Drain()
        {
            while (_idle.TryDequeue(out var m)) m.Dispose();
        }
    }

    [GeneratedRegex(@"\bn:\s*\d+\s+pts:\s*(-?\d+|NOPTS)\s")]
    private static partial Regex ShowInfoFrame();

    [GeneratedRegex(@"\biskey:\s*(\d)")]
    private static partial Regex ShowInfoKey();

    [GeneratedRegex(@"config in time_base:\s*(\d+/\d+)")]
    private static partial Regex ShowInfoTimeBase();
}
