using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Deid.Media;

/// <summary>
/// An exclusive claim on one output path for a whole run: <c>.NAME.deid-lock</c> beside the target, held with an
/// advisory <c>flock</c> (released by the kernel when the process dies, so a killed run never blocks the next one).
/// A second process given the same output fails at once with a one-line <see cref="MediaException"/>, so two runs
/// can never write the same file. While it holds the lock, the owner removes the temp files earlier runs for the same
/// target left behind when they were killed (their pid is in the name and that process is gone), never a live one's.
/// </summary>
public sealed partial class OutputLock : IDisposable
{
    private readonly FileStream _stream;
    private bool _disposed;

    public string TargetPath { get; }
    public string LockPath { get; }

    /// <summary>Stale temp files this lock's owner deleted when it took the lock.</summary>
    public IReadOnlyList<string> RemovedStaleTemps { get; }

    private OutputLock(string target, string lockPath, FileStream stream, IReadOnlyList<string> removed)
    {
        TargetPath = target;
        LockPath = lockPath;
        _stream = stream;
        RemovedStaleTemps = removed;
    }

    public static string LockPathFor(string outputPath)
    {
        var full = Path.GetFullPath(outputPath);
        return Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.deid-lock");
    }

    /// <summary>Takes the lock or throws <see cref="MediaException"/> naming the output another run is writing.</summary>
    public static OutputLock Acquire(string outputPath)
    {
        var target = Path.GetFullPath(outputPath);
        var lockPath = LockPathFor(target);
        for (var attempt = 0; ; attempt++)
        {
            FileStream stream;
            try
            {
                // FileShare.None is an flock(LOCK_EX | LOCK_NB) on Unix: a second holder gets EWOULDBLOCK at once.
                stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            }
            catch (UnauthorizedAccessException e)
            {
                throw new MediaException($"output directory is not writable: {Path.GetDirectoryName(target)} ({e.Message})", e);
            }
            catch (IOException e) when (File.Exists(lockPath))
            {
                throw new MediaException(
                    $"another deid run is already writing {outputPath} (it holds {Path.GetFileName(lockPath)}); wait for it to finish or choose another output path", e);
            }
            catch (IOException e)
            {
                throw new MediaException($"cannot create the lock file {lockPath}: {e.Message}", e);
            }
            // The previous owner deletes the lock file before releasing it: if ours was unlinked between our open and
            // our flock, we hold a lock on a file nobody else will ever open, so start again on the path's new file.
            if (!SameFile(stream, lockPath))
            {
                stream.Dispose();
                if (attempt < 20) continue;
                throw new MediaException($"cannot take the lock {lockPath}: it keeps being replaced");
            }
            try
            {
                stream.SetLength(0);
                var pid = System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
                stream.Write(pid);
                stream.Flush();
            }
            catch (IOException) { /* the pid in the file is informative only */ }
            return new OutputLock(target, lockPath, stream, RemoveStaleTemps(target));
        }
    }

    /// <summary>
    /// Deletes <c>.NAME.deid-tmp-PID-*.EXT</c> files of <paramref name="outputPath"/> whose process PID is gone
    /// (call only while holding the target's lock). Temps of a live process and of other targets are never touched.
    /// </summary>
    public static IReadOnlyList<string> RemoveStaleTemps(string outputPath)
    {
        var full = Path.GetFullPath(outputPath);
        var dir = Path.GetDirectoryName(full)!;
        var prefix = $".{Path.GetFileName(full)}.deid-tmp-";
        var removed = new List<string>();
        IEnumerable<string> candidates;
        try { candidates = Directory.EnumerateFiles(dir, prefix + "*").ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return removed; }
        foreach (var file in candidates)
        {
            var rest = Path.GetFileName(file)[prefix.Length..];
            var m = TempPid().Match(rest);
            if (!m.Success || !int.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            if (pid == Environment.ProcessId || ProcessAlive(pid)) continue;
            try
            {
                File.Delete(file);
                removed.Add(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return removed;
    }

    [GeneratedRegex(@"^([0-9]{1,10})-[0-9a-f]{8}\.")]
    private static partial Regex TempPid();

    /// <summary>True when a process with this pid exists (a zombie counts: its parent may still be about to clean up).</summary>
    public static bool ProcessAlive(int pid)
    {
        if (pid <= 0) return false;
        if (OperatingSystem.IsLinux()) return Directory.Exists($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}");
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>Removes the lock file while still holding the lock, then releases it.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            if (SameFile(_stream, LockPath)) File.Delete(LockPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        _stream.Dispose();
    }

    // ---- same file check: (st_dev, st_ino) of the open descriptor vs. the path ----

    private static bool SameFile(FileStream stream, string path)
    {
        if (!OperatingSystem.IsLinux()) return File.Exists(path);
        try
        {
            var a = new byte[256];
            var b = new byte[256];
            if (fstat((int)stream.SafeFileHandle.DangerousGetHandle(), a) != 0) return File.Exists(path);
            if (stat(path, b) != 0) return false;
            // Linux x86-64 and aarch64 both start struct stat with st_dev (8 bytes) then st_ino (8 bytes)
            return a.AsSpan(0, 16).SequenceEqual(b.AsSpan(0, 16));
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return File.Exists(path);
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int fstat(int fd, byte[] buf);

    [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
    private static extern int stat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte[] buf);
}
