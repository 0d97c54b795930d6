using System.Runtime.InteropServices;

namespace Deid.Media;

/// <summary>Checks an output path before any work starts, and names the temp file the writer fills.</summary>
public static partial class OutputPaths
{
    /// <summary>Containers the writer can produce: libx264 (VP9 for .webm) and copied audio.</summary>
    public static IReadOnlyList<string> SupportedExtensions { get; } = [".mp4", ".mov", ".m4v", ".mkv", ".webm"];

    /// <summary>Throws <see cref="MediaException"/> unless <paramref name="outputPath"/> can be written and is not the input.</summary>
    public static void Validate(string inputPath, string outputPath)
    {
        if (string.IsNullOrWhiteSpace(outputPath)) throw new MediaException("output path is empty");
        var full = Path.GetFullPath(outputPath);
        if (Directory.Exists(full)) throw new MediaException($"output path is a directory: {outputPath}");
        var ext = Path.GetExtension(full).ToLowerInvariant();
        if (ext.Length == 0)
            throw new MediaException($"output path needs a video file extension ({string.Join(", ", SupportedExtensions)}): {outputPath}");
        if (!SupportedExtensions.Contains(ext))
            throw new MediaException($"unsupported output container '{ext}' (use {string.Join(", ", SupportedExtensions)}): {outputPath}");
        if (!string.IsNullOrWhiteSpace(inputPath) && SameFile(inputPath, full))
            throw new MediaException($"output path is the input file itself (the input is never overwritten): {outputPath}");
        var dir = Path.GetDirectoryName(full) ?? throw new MediaException($"output path has no directory: {outputPath}");
        if (!Directory.Exists(dir)) throw new MediaException($"output directory does not exist: {dir}");
        // permissions alone do not tell (root, read-only mounts, ACLs): actually create a file there
        var probe = Path.Combine(dir, $".deid-write-test-{Guid.NewGuid():N}");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MediaException($"output directory is not writable: {dir} ({e.Message})", e);
        }
        finally
        {
            try { File.Delete(probe); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        // an existing output file is simply replaced: Complete() renames over it
    }

    /// <summary>
    /// ".NAME.deid-tmp-PID-XXXXXXXX.EXT" beside the output: same file system (atomic rename), same extension (ffmpeg
    /// picks the muxer from it), and the owner's pid, so a later run can tell a killed run's leftover from a live one's
    /// (<see cref="OutputLock.RemoveStaleTemps"/>).
    /// </summary>
    public static string TempPathFor(string outputPath)
    {
        var full = Path.GetFullPath(outputPath);
        var dir = Path.GetDirectoryName(full)!;
        var name = Path.GetFileName(full);
        var ext = Path.GetExtension(full);
        return Path.Combine(dir, $".{name}.deid-tmp-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}{ext}");
    }

    /// <summary>True when both paths name the same file, also through symlinks (directories or the file itself).</summary>
    public static bool SameFile(string a, string b)
    {
        var ca = Canonical(a);
        var cb = Canonical(b);
        return string.Equals(ca, cb, OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
    }

    /// <summary>Absolute path with every symlink resolved; a file that does not exist yet resolves through its directory.</summary>
    internal static string Canonical(string path)
    {
        var full = Path.GetFullPath(path);
        if (RealPath(full) is { } real) return real;
        var dir = Path.GetDirectoryName(full);
        if (dir != null && RealPath(dir) is { } realDir) return Path.Combine(realDir, Path.GetFileName(full));
        return full;
    }

    private static string? RealPath(string path)
    {
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
        {
            try
            {
                var p = realpath(path, IntPtr.Zero);
                if (p == IntPtr.Zero) return null;
                try { return Marshal.PtrToStringUTF8(p); }
                finally { free(p); }
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        }
        if (!File.Exists(path) && !Directory.Exists(path)) return null;
        try
        {
            FileSystemInfo fi = File.Exists(path) ? new FileInfo(path) : new DirectoryInfo(path);
            return (fi.ResolveLinkTarget(returnFinalTarget: true) ?? fi).FullName;
        }
        catch (IOException) { return Path.GetFullPath(path); }
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr realpath(string path, IntPtr resolved);

    [LibraryImport("libc")]
    private static partial void free(IntPtr p);
}
