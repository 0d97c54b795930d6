using System.Diagnostics;
using System.Text.Json;

namespace Deid.TestSupport;

/// <summary>Runs ffmpeg/ffprobe directly, so tests check our output with a tool that is not our own code.</summary>
public static class Tool
{
    public static (int Code, string StdOut, string StdErr) Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.Result);
    }

    /// <summary>ffmpeg -y -v error ARGS; throws with ffmpeg's message on failure.</summary>
    public static void Ffmpeg(params string[] args)
    {
        var r = Run("ffmpeg", ["-hide_banner", "-nostdin", "-y", "-v", "error", .. args]);
        if (r.Code != 0) throw new InvalidOperationException("ffmpeg failed: " + r.StdErr);
    }

    /// <summary>ffprobe -show_streams -show_format as JSON.</summary>
    public static JsonDocument Probe(string path, params string[] extra)
    {
        var r = Run("ffprobe", ["-v", "error", "-print_format", "json", "-show_streams", "-show_format", .. extra, path]);
        if (r.Code != 0) throw new InvalidOperationException("ffprobe failed: " + r.StdErr);
        return JsonDocument.Parse(r.StdOut);
    }

    /// <summary>Exact number of decoded video frames (ffprobe -count_frames).</summary>
    public static int CountFrames(string path)
    {
        var r = Run("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path);
        return int.Parse(r.StdOut.Trim().Split('\n')[0].Trim(','));
    }

    /// <summary>Presentation times (seconds) of every video frame.</summary>
    public static double[] FrameTimes(string path)
    {
        var r = Run("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time", "-of", "csv=p=0", path);
        return r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => double.Parse(l.Trim().Trim(','), System.Globalization.CultureInfo.InvariantCulture)).ToArray();
    }
}
