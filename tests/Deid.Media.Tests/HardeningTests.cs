using System.Diagnostics;
using System.Globalization;
using Deid.Media;
using Deid.TestSupport;

namespace Deid.Media.Tests;

/// <summary>Issue 12's media items: odd sizes, subtitles and attachments, WebM, the output lock and stale temp files.</summary>
public sealed class HardeningTests
{
    private static string Streams(string path, string type) => string.Join(",",
        Tool.Probe(path).RootElement.GetProperty("streams").EnumerateArray()
            .Where(s => s.GetProperty("codec_type").GetString() == type).Select(s => s.GetProperty("codec_name").GetString()));

    /// <summary>0.4 s of a shared clip at 641×479 in the given codec / pixel format / container.</summary>
    private static string OddClip(TempDir dir, string codec, string pixFmt, string file)
    {
        var output = dir.File(file);
        Tool.Ffmpeg("-i", Clips.Shared("talk_small.mp4"), "-t", "0.4", "-vf", "scale=641:479", "-c:v", codec, "-pix_fmt", pixFmt, "-c:a", "copy", output);
        return output;
    }

    [Theory]
    [InlineData("libx264", "yuv444p", "in.mp4", "out.mp4")]
    [InlineData("libx264", "yuv444p", "in.mp4", "out.mkv")]
    [InlineData("ffv1", "yuv420p", "in.mkv", "out.mp4")]
    [InlineData("ffv1", "yuv420p", "in.mkv", "out.mkv")]
    public void OddFrameSize_KeepsTheInputDimensions(string codec, string pixFmt, string input, string output)
    {
        using var dir = new TempDir();
        var clip = OddClip(dir, codec, pixFmt, input);
        var info = Clips.RoundTrip(clip, dir.File(output));
        Assert.Equal((641, 479), (info.Width, info.Height));
        var v = Clips.VideoStream(dir.File(output));
        Assert.Equal(641, v.GetProperty("width").GetInt32());
        Assert.Equal(479, v.GetProperty("height").GetInt32());
        // 4:2:0 cannot have an odd size: the chroma is kept at full resolution instead of padding or scaling
        Assert.Equal("yuv444p", v.GetProperty("pix_fmt").GetString());
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(dir.File(output)));
    }

    [Theory]
    [InlineData("yuv420p", 640, 480, "yuv420p")]
    [InlineData("yuv420p10le", 640, 480, "yuv420p")]
    [InlineData("yuvj420p", 641, 480, "yuv444p")]
    [InlineData("yuv420p", 640, 479, "yuv444p")]
    [InlineData("yuv422p", 640, 479, "yuv422p")]
    [InlineData("yuv422p10le", 641, 480, "yuv444p")]
    [InlineData("yuv444p", 640, 480, "yuv444p")]
    [InlineData("gbrp", 64, 64, "yuv444p")]
    [InlineData("", 64, 64, "yuv420p")]
    public void PixelFormat_KeepsTheSourceChromaWhereTheSizeAllows(string source, int w, int h, string expected) =>
        Assert.Equal(expected, VideoWriter.OutputPixelFormat(source, w, h));

    [Fact]
    public void Yuv422Source_WithAnOddHeight_StaysYuv422()
    {
        using var dir = new TempDir();
        var even = dir.File("even.mp4");
        Tool.Ffmpeg("-i", Clips.Shared("talk_small.mp4"), "-t", "0.3", "-vf", "scale=160:119", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv422p", even);
        Clips.RoundTrip(even, dir.File("out.mp4"));
        Assert.Equal("yuv422p", Clips.VideoStream(dir.File("out.mp4")).GetProperty("pix_fmt").GetString());
    }

    /// <summary>0.6 s with AAC audio, one SubRip subtitle stream and a font attachment, in Matroska.</summary>
    private static string SubtitledMkv(TempDir dir)
    {
        var srt = dir.File("s.srt");
        File.WriteAllText(srt, "1\n00:00:00,000 --> 00:00:00,500\nHello\n");
        var output = dir.File("sub.mkv");
        Tool.Ffmpeg("-i", Clips.Shared("talk_small.mp4"), "-i", srt, "-t", "0.6", "-map", "0", "-map", "1", "-vf", "scale=128:128",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", "-c:s", "srt",
            "-attach", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "-metadata:s:t", "mimetype=application/x-truetype-font", output);
        return output;
    }

    private static (VideoInfo Info, IReadOnlyList<string> Warnings) Write(string input, string output, VideoWriterOptions? options = null)
    {
        using var reader = new VideoReader(input);
        using var writer = new VideoWriter(output, reader.Info, options ?? Clips.Fast);
        foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken))
            using (frame)
                writer.Write(frame);
        writer.Complete();
        return (reader.Info, writer.Warnings);
    }

    [Fact]
    public void Subtitles_AndAttachments_AreCopiedIntoMatroska()
    {
        if (!File.Exists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")) Assert.Skip("fonts-dejavu-core missing");
        using var dir = new TempDir();
        var clip = SubtitledMkv(dir);
        var (info, warnings) = Write(clip, dir.File("out.mkv"));
        Assert.Single(info.SubtitleStreams);
        Assert.Single(info.AttachmentStreams);
        Assert.Empty(warnings);
        Assert.Equal("subrip", Streams(dir.File("out.mkv"), "subtitle"));
        Assert.Equal("ttf", Streams(dir.File("out.mkv"), "attachment"));
        Assert.Equal("aac", Streams(dir.File("out.mkv"), "audio"));
        // the subtitle text itself survives
        var text = Tool.Run("ffmpeg", "-v", "error", "-i", dir.File("out.mkv"), "-map", "0:s:0", "-f", "srt", "-").StdOut;
        Assert.Contains("Hello", text);
    }

    [Fact]
    public void Subtitles_BecomeMovText_InMp4_AndTheAttachmentIsAWarning()
    {
        if (!File.Exists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")) Assert.Skip("fonts-dejavu-core missing");
        using var dir = new TempDir();
        var clip = SubtitledMkv(dir);
        var (_, warnings) = Write(clip, dir.File("out.mp4"));
        Assert.Equal("mov_text", Streams(dir.File("out.mp4"), "subtitle"));
        Assert.Equal("", Streams(dir.File("out.mp4"), "attachment"));
        var w = Assert.Single(warnings);
        Assert.Contains("attachment stream", w);
        Assert.Contains("DejaVuSans.ttf", w);
        Assert.Contains(".mkv", w);
    }

    [Fact]
    public void DropSubtitles_LeavesThemOut()
    {
        if (!File.Exists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")) Assert.Skip("fonts-dejavu-core missing");
        using var dir = new TempDir();
        var clip = SubtitledMkv(dir);
        Write(clip, dir.File("out.mkv"), Clips.Fast with { DropSubtitles = true });
        Assert.Equal("", Streams(dir.File("out.mkv"), "subtitle"));
        Assert.Equal("aac", Streams(dir.File("out.mkv"), "audio"));
    }

    [Fact]
    public void Scope_HandsOptionsToAWriterCreatedWithout_AndCollectsItsWarnings()
    {
        if (!File.Exists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")) Assert.Skip("fonts-dejavu-core missing");
        using var dir = new TempDir();
        var clip = SubtitledMkv(dir);
        using (var scope = VideoWriterScope.Begin(new VideoWriterOptions { Preset = "veryfast", DropSubtitles = true }))
        {
            using (var reader = new VideoReader(clip))
            using (var writer = new VideoWriter(dir.File("out.mp4"), reader.Info, options: null))
            {
                foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken))
                    using (frame)
                        writer.Write(frame);
                writer.Complete();
            }
            Assert.Contains("attachment stream", Assert.Single(scope.Warnings));
        }
        Assert.Equal("", Streams(dir.File("out.mp4"), "subtitle"));
    }

    [Fact]
    public void WebM_WithAacAudio_IsAOneLineErrorSuggestingMkvOrTranscode()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_small.mp4", 0.4, scale: "128:128");
        var info = MediaProbe.Probe(clip);
        var outDir = Directory.CreateDirectory(dir.File("out")).FullName;
        var e = Assert.Throws<MediaException>(() => new VideoWriter(Path.Combine(outDir, "o.webm"), info));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains("aac", e.Message);
        Assert.Contains("Opus or Vorbis", e.Message);
        Assert.Contains(".mkv", e.Message);
        Assert.Contains("--audio-transcode opus", e.Message);
        Assert.Empty(Clips.Leftovers(outDir));
    }

    [Fact]
    public void WebM_TranscodesToOpus_WhenAsked()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_small.mp4", 0.4, scale: "128:128");
        Write(clip, dir.File("out.webm"), Clips.Fast with { AudioTranscode = "opus" });
        Assert.Equal("vp9", Clips.VideoStream(dir.File("out.webm")).GetProperty("codec_name").GetString());
        Assert.Equal("opus", Streams(dir.File("out.webm"), "audio"));
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(dir.File("out.webm")));
    }

    [Fact]
    public void WebM_CopiesOpusAudio()
    {
        using var dir = new TempDir();
        var clip = dir.File("opus.mkv");
        Tool.Ffmpeg("-i", Clips.Shared("talk_small.mp4"), "-t", "0.4", "-vf", "scale=127:95", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p", "-c:a", "libopus", clip);
        Write(clip, dir.File("out.webm"));
        var v = Clips.VideoStream(dir.File("out.webm"));
        Assert.Equal("vp9", v.GetProperty("codec_name").GetString());
        Assert.Equal((127, 95), (v.GetProperty("width").GetInt32(), v.GetProperty("height").GetInt32()));
        Assert.Equal("opus", Streams(dir.File("out.webm"), "audio"));
        // copied, not re-encoded: the same audio packets
        Assert.Equal(Clips.AudioPackets(clip).Select(p => p.Size), Clips.AudioPackets(dir.File("out.webm")).Select(p => p.Size));
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(dir.File("out.webm")));
    }

    [Fact]
    public void SecondWriterForTheSameOutput_FailsAtOnce_AndTheFirstFinishes()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d0_noaudio.mp4", 0.3, scale: "64:64");
        var info = MediaProbe.Probe(clip);
        var outDir = Directory.CreateDirectory(dir.File("out")).FullName;
        var output = Path.Combine(outDir, "o.mp4");
        using (var reader = new VideoReader(clip))
        using (var first = new VideoWriter(output, reader.Info, Clips.Fast))
        {
            Assert.True(File.Exists(OutputLock.LockPathFor(output)));
            var e = Assert.Throws<MediaException>(() => new VideoWriter(output, info, Clips.Fast));
            Assert.Contains("another deid run is already writing", e.Message);
            foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken))
                using (frame)
                    first.Write(frame);
            first.Complete();
        }
        Assert.Equal(["o.mp4"], Clips.Leftovers(outDir));
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(output));
        // released: the next writer for that path takes it
        using (new VideoWriter(output, info, Clips.Fast)) { }
        Assert.Equal(["o.mp4"], Clips.Leftovers(outDir));
    }

    [Fact]
    public void StaleTemps_OfDeadProcesses_AreRemoved_LiveOnesAndOtherTargetsKept()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d0_noaudio.mp4", 0.2, scale: "64:64");
        var info = MediaProbe.Probe(clip);
        var outDir = Directory.CreateDirectory(dir.File("out")).FullName;
        int dead;
        using (var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!) { p.WaitForExit(); dead = p.Id; }
        Assert.False(OutputLock.ProcessAlive(dead));
        using var live = Process.Start(new ProcessStartInfo("sleep", "60") { UseShellExecute = false })!;
        try
        {
            string Temp(string target, int pid) => Path.Combine(outDir, $".{target}.deid-tmp-{pid.ToString(CultureInfo.InvariantCulture)}-0123abcd.mp4");
            File.WriteAllText(Temp("o.mp4", dead), "killed run");
            File.WriteAllText(Temp("o.mp4", live.Id), "running");
            File.WriteAllText(Temp("other.mp4", dead), "another target");
            File.WriteAllText(Path.Combine(outDir, ".o.mp4.deid-lock"), "99999999\n");   // a killed run's lock file, no longer held
            using (var writer = new VideoWriter(Path.Combine(outDir, "o.mp4"), info, Clips.Fast)) { }
            Assert.Equal(new[] { Path.GetFileName(Temp("o.mp4", live.Id)), Path.GetFileName(Temp("other.mp4", dead)) }.Order(),
                Clips.Leftovers(outDir).Order());
        }
        finally
        {
            live.Kill();
            live.WaitForExit();
        }
    }
}
