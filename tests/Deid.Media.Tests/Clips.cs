using System.Globalization;
using System.Text.Json;
using Deid.Media;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Media.Tests;

/// <summary>Short clips cut from ../shared with ffmpeg, and independent ffprobe checks.</summary>
internal static class Clips
{
    public static string Shared(string name) => TestPaths.Video(name);

    /// <summary>The first <paramref name="seconds"/> of a shared clip, re-encoded (quick) with its audio copied.</summary>
    public static string Trimmed(TempDir dir, string name, double seconds, string? scale = null, string file = "clip.mp4")
    {
        var output = dir.File(file);
        List<string> args = ["-i", Shared(name), "-t", seconds.ToString(CultureInfo.InvariantCulture)];
        if (scale != null) args.AddRange(["-vf", "scale=" + scale]);
        args.AddRange(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "copy", output]);
        Tool.Ffmpeg([.. args]);
        return output;
    }

    /// <summary>25 fps for 1 s then 10 fps for 1 s, then irregular steps: timestamps that no single rate describes.</summary>
    public static string Vfr(TempDir dir)
    {
        var output = dir.File("vfr.mp4");
        Tool.Ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1",
            "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1",
            "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0,settb=1/1000,setpts='PTS+if(gte(N,30),mod(N,4)*7,0)'[v]",
            "-map", "[v]", "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-video_track_timescale", "1000", output);
        return output;
    }

    public static JsonElement VideoStream(string path) =>
        Tool.Probe(path).RootElement.GetProperty("streams").EnumerateArray().First(s => s.GetProperty("codec_type").GetString() == "video");

    public static int AudioStreamCount(string path) =>
        Tool.Probe(path).RootElement.GetProperty("streams").EnumerateArray().Count(s => s.GetProperty("codec_type").GetString() == "audio");

    /// <summary>ffprobe's "rotation" of the display matrix (0 when none).</summary>
    public static double Rotation(string path)
    {
        var v = VideoStream(path);
        if (v.TryGetProperty("side_data_list", out var sd))
            foreach (var item in sd.EnumerateArray())
                if (item.TryGetProperty("rotation", out var r)) return r.GetDouble();
        return 0;
    }

    /// <summary>(pts, size) of every packet of the first audio stream.</summary>
    public static List<(string Pts, string Size)> AudioPackets(string path)
    {
        var r = Tool.Run("ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=pts_time,size", "-of", "csv=p=0", path);
        return r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Trim().Split(','))
            .Select(p => (p[0], p[1])).ToList();
    }

    /// <summary>The first frame as ffmpeg displays it (autorotated), decoded independently of Deid.Media.</summary>
    public static Mat FirstFrameGray(string path, int width, int height)
    {
        var raw = Path.GetTempFileName();
        try
        {
            Tool.Ffmpeg("-i", path, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", raw);
            var bytes = File.ReadAllBytes(raw);
            Assert.Equal(width * height, bytes.Length);
            var m = new Mat(height, width, MatType.CV_8UC1);
            m.SetArray(bytes);
            return m;
        }
        finally { File.Delete(raw); }
    }

    /// <summary>Reads every frame and writes it back unchanged.</summary>
    public static VideoInfo RoundTrip(string input, string output, VideoWriterOptions? options = null)
    {
        using var reader = new VideoReader(input);
        using var writer = new VideoWriter(output, reader.Info, options ?? Fast);
        foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken))
            using (frame)
                writer.Write(frame);
        writer.Complete();
        return reader.Info;
    }

    public static readonly VideoWriterOptions Fast = new() { Preset = "veryfast" };

    /// <summary>
    /// Running child processes of this test process whose command line mentions <paramref name="marker"/>: tests run
    /// in parallel, so only processes about a test's own unique file count.
    /// </summary>
    public static List<int> ChildProcessesUsing(string marker) =>
        Children().Where(c => c.Cmd.Contains(marker, StringComparison.Ordinal)).Select(c => c.Pid).ToList();

    /// <summary>
    /// Those of <paramref name="pids"/> still present as children of this process, zombies included (a zombie is
    /// exactly what must not be left behind). Checked by pid rather than by command line because a zombie's command
    /// line is empty, and tests in other classes run their own ffmpeg children in parallel.
    /// </summary>
    public static List<int> StillPresent(IEnumerable<int> pids)
    {
        var children = Children().Select(c => c.Pid).ToHashSet();
        return pids.Where(children.Contains).ToList();
    }

    private static List<(int Pid, string Cmd)> Children()
    {
        var me = Environment.ProcessId;
        var found = new List<(int, string)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var close = stat.LastIndexOf(')');
                var fields = stat[(close + 2)..].Split(' ');
                if (int.Parse(fields[1], CultureInfo.InvariantCulture) != me) continue;
                found.Add((pid, File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ')));
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return found;
    }

    /// <summary>A uniquely named link to a shared clip, so its ffmpeg processes can be told apart.</summary>
    public static string UniqueLink(TempDir dir, string name)
    {
        var link = dir.File($"unique-{Guid.NewGuid():N}.mp4");
        File.CreateSymbolicLink(link, Shared(name));
        return link;
    }

    /// <summary>Files left in a folder other than the named ones (temp files, partial outputs).</summary>
    public static string[] Leftovers(string dir, params string[] expected) =>
        Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Where(n => !expected.Contains(n)).Select(n => n!).ToArray();
}
