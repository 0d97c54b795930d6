using System.ComponentModel;
using System.Diagnostics;

namespace Deid.Media;

/// <summary>Finds and runs ffmpeg / ffprobe (DEID_FFMPEG / DEID_FFPROBE override the PATH lookup).</summary>
internal static class FfTools
{
    public static string Ffmpeg => Environment.GetEnvironmentVariable("DEID_FFMPEG") is { Length: > 0 } p ? p : "ffmpeg";
    public static string Ffprobe => Environment.GetEnvironmentVariable("DEID_FFPROBE") is { Length: > 0 } p ? p : "ffprobe";

    public static Process Start(string exe, IEnumerable<string> args, bool stdin, bool stdout)
    {
        var psi = new ProcessStartInfo(exe)
        {
            UseShellExecute = false,
            RedirectStandardInput = stdin,
            RedirectStandardOutput = stdout,
            RedirectStandardError = true,
            CreateNoWindow = true,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            return Process.Start(psi) ?? throw new MediaException($"could not start {exe}");
        }
        catch (Win32Exception e)
        {
            throw new MediaException($"{exe} not found or not executable (install ffmpeg): {e.Message}", e);
        }
    }

    /// <summary>Runs to completion and returns exit code, stdout and stderr.</summary>
    public static (int Code, string StdOut, string StdErr) Run(string exe, IEnumerable<string> args)
    {
        using var p = Start(exe, args, stdin: false, stdout: true);
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.GetAwaiter().GetResult());
    }

    /// <summary>Kills a still running process and reaps it, so no zombie is left behind.</summary>
    public static void Stop(Process p)
    {
        try
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException) { }
        catch (Win32Exception) { }
        try { p.WaitForExit(5000); } catch (InvalidOperationException) { } catch (SystemException) { }
    }

    /// <summary>The most telling line of ffmpeg's stderr: the last non-empty one, without the "[xxx @ 0x..]" prefix.</summary>
    public static string Summarize(string stderr)
    {
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length == 0) return "no details";
        var last = lines[^1];
        if (last.StartsWith('[') && last.IndexOf("] ", StringComparison.Ordinal) is var i and > 0) last = last[(i + 2)..];
        if (last.StartsWith("[error] ", StringComparison.Ordinal)) last = last[8..];
        return last.Length > 300 ? last[..300] : last;
    }
}

/// <summary>Keeps the last lines a process wrote to stderr, for error messages.</summary>
internal sealed class StderrTail
{
    private readonly Queue<string> _lines = new();
    private readonly int _max;
    public StderrTail(int max = 20) => _max = max;

    public void Add(string line)
    {
        lock (_lines)
        {
            _lines.Enqueue(line);
            while (_lines.Count > _max) _lines.Dequeue();
        }
    }

    public string Text
    {
        get { lock (_lines) return string.Join('\n', _lines); }
    }
}
