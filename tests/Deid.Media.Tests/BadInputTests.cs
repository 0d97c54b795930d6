using Deid.Media;
using Deid.TestSupport;

namespace Deid.Media.Tests;

/// <summary>Every bad input or output gives a MediaException with one clear line, and leaves no file behind.</summary>
public class BadInputTests
{
    private static void AssertFails(string input, string expected)
    {
        var e = Assert.Throws<MediaException>(() => new VideoReader(input));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Throws<MediaException>(() => MediaProbe.Probe(input));
    }

    [Fact]
    public void MissingInput()
    {
        using var dir = new TempDir();
        AssertFails(dir.File("nope.mp4"), "input file not found");
    }

    [Fact]
    public void ZeroByteInput()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("empty.mp4"), []);
        AssertFails(dir.File("empty.mp4"), "input file is empty");
    }

    [Fact]
    public void TextFileInput()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("notes.mp4"), "this is not a video\n");
        AssertFails(dir.File("notes.mp4"), "not a readable video");
    }

    [Fact]
    public void TruncatedInputWithoutIndex()
    {
        // talk_d3.mp4 keeps its index (moov) at the end: cut it off
        using var dir = new TempDir();
        var bytes = File.ReadAllBytes(Clips.Shared("talk_d3.mp4"));
        File.WriteAllBytes(dir.File("cut.mp4"), bytes[..(bytes.Length / 2)]);
        AssertFails(dir.File("cut.mp4"), "truncated");
    }

    [Fact]
    public void TruncatedInputWithIndexFirst()
    {
        using var dir = new TempDir();
        var fast = dir.File("fast.mp4");
        Tool.Ffmpeg("-i", Clips.Shared("talk_d3.mp4"), "-c", "copy", "-movflags", "+faststart", fast);
        var bytes = File.ReadAllBytes(fast);
        File.WriteAllBytes(dir.File("cut.mp4"), bytes[..(bytes.Length * 6 / 10)]);
        AssertFails(dir.File("cut.mp4"), "truncated");
    }

    [Fact]
    public void AudioOnlyInput()
    {
        using var dir = new TempDir();
        var audio = dir.File("audio.m4a");
        Tool.Ffmpeg("-i", Clips.Shared("talk_d3.mp4"), "-t", "1", "-vn", "-c:a", "copy", audio);
        AssertFails(audio, "audio-only");
    }

    [Fact]
    public void DirectoryInput()
    {
        using var dir = new TempDir();
        AssertFails(dir.Path, "directory");
    }

    private static VideoInfo SmallInfo(TempDir dir) => MediaProbe.Probe(Clips.Trimmed(dir, "talk_d0_noaudio.mp4", 0.2, scale: "64:64"));

    private static void AssertOutputFails(VideoInfo info, string output, string expected)
    {
        var e = Assert.Throws<MediaException>(() => new VideoWriter(output, info));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Throws<MediaException>(() => OutputPaths.Validate(info.Path, output));
    }

    [Fact]
    public void OutputEqualToInput()
    {
        using var dir = new TempDir();
        var info = SmallInfo(dir);
        var before = File.ReadAllBytes(info.Path);
        AssertOutputFails(info, info.Path, "is the input file");
        // another spelling of the same path
        AssertOutputFails(info, Path.Combine(dir.Path, ".", "clip.mp4"), "is the input file");
        // through a symlinked file and a symlinked directory
        File.CreateSymbolicLink(dir.File("link.mp4"), info.Path);
        AssertOutputFails(info, dir.File("link.mp4"), "is the input file");
        Directory.CreateSymbolicLink(dir.File("linkdir"), dir.Path);
        AssertOutputFails(info, Path.Combine(dir.File("linkdir"), "clip.mp4"), "is the input file");
        Assert.Equal(before, File.ReadAllBytes(info.Path));
        Assert.Equal(["clip.mp4", "link.mp4", "linkdir"], Clips.Leftovers(dir.Path).Order().ToArray());
    }

    [Fact]
    public void MissingOutputDirectory()
    {
        using var dir = new TempDir();
        var info = SmallInfo(dir);
        AssertOutputFails(info, Path.Combine(dir.Path, "no", "such", "out.mp4"), "output directory does not exist");
        Assert.Equal(["clip.mp4"], Clips.Leftovers(dir.Path));
    }

    [Fact]
    public void UnwritableOutputDirectory()
    {
        using var dir = new TempDir();
        var info = SmallInfo(dir);
        string target;
        if (Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root" || IsRoot())
        {
            // root ignores permission bits; /proc refuses new files to everyone
            target = "/proc/deid-out.mp4";
        }
        else
        {
            var ro = Directory.CreateDirectory(dir.File("ro")).FullName;
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(ro, UnixFileMode.UserRead | UnixFileMode.UserExecute);
            target = Path.Combine(ro, "out.mp4");
        }
        AssertOutputFails(info, target, "not writable");
        Assert.False(File.Exists(target));
    }

    [Fact]
    public void UnsupportedOrMissingExtension()
    {
        using var dir = new TempDir();
        var info = SmallInfo(dir);
        AssertOutputFails(info, dir.File("out"), "extension");
        AssertOutputFails(info, dir.File("out.avi"), "unsupported output container");
        AssertOutputFails(info, dir.Path, "is a directory");
        Assert.Equal(["clip.mp4"], Clips.Leftovers(dir.Path));
    }

    private static bool IsRoot()
    {
        var status = File.Exists("/proc/self/status") ? File.ReadAllLines("/proc/self/status") : [];
        var uid = status.FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        return uid != null && uid.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1] == "0";
    }
}
