using System.Globalization;
using OpenCvSharp;

namespace Deid.Media;

/// <summary>Single upright BGR frames at given times, each by a seeking ffmpeg (cheap for sampling a long clip).</summary>
public static class FrameGrabber
{
    /// <summary>The frame shown at <paramref name="at"/> (the nearest decodable one), or null when ffmpeg gives none.</summary>
    public static Mat? Grab(VideoInfo info, TimeSpan at)
    {
        string[] args =
        [
            "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
            "-ss", at.TotalSeconds.ToString("0.######", CultureInfo.InvariantCulture),
            "-i", info.Path,
            "-map", "0:" + info.VideoStreamIndex.ToString(CultureInfo.InvariantCulture),
            "-an", "-sn", "-dn", "-frames:v", "1",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1",
        ];
        using var p = FfTools.Start(FfTools.Ffmpeg, args, stdin: false, stdout: true);
        var err = p.StandardError.ReadToEndAsync();
        var expected = (long)info.Width * info.Height * 3;
        var mat = new Mat(info.Height, info.Width, MatType.CV_8UC3);
        long read = 0;
        try
        {
            var buffer = new byte[1 << 16];
            var stream = p.StandardOutput.BaseStream;
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                var take = (int)Math.Min(n, expected - read);
                if (take > 0) System.Runtime.InteropServices.Marshal.Copy(buffer, 0, mat.Data + (nint)read, take);
                read += n;
            }
            p.WaitForExit();
            _ = err.GetAwaiter().GetResult();
        }
        catch
        {
            FfTools.Stop(p);
            mat.Dispose();
            throw;
        }
        if (read != expected) { mat.Dispose(); return null; }
        return mat;
    }

    /// <summary><paramref name="count"/> times spread evenly over the clip (frame centres of equal parts).</summary>
    public static IReadOnlyList<TimeSpan> EvenTimes(VideoInfo info, int count)
    {
        var duration = info.Duration;
        if (count <= 0) return [];
        if (duration <= TimeSpan.Zero) return [TimeSpan.Zero];
        return Enumerable.Range(0, count).Select(i => duration * ((i + 0.5) / count)).ToList();
    }
}
