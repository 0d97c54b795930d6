using Deid.Media;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Media.Tests;

public class ReaderTests
{
    [Theory]
    [InlineData("talk_small.mp4")]
    [InlineData("talk_d0_noaudio.mp4")]
    public void ReadsEveryFrameWithFfprobeTimestamps(string name)
    {
        var path = Clips.Shared(name);
        var expected = Tool.FrameTimes(path);
        using var reader = new VideoReader(path);
        var times = new List<double>();
        long index = 0;
        foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken))
        {
            using (frame)
            {
                Assert.Equal(index++, frame.Index);
                Assert.Equal(reader.Info.Width, frame.Image.Width);
                Assert.Equal(reader.Info.Height, frame.Image.Height);
                Assert.Equal(MatType.CV_8UC3, frame.Image.Type());
                Assert.Equal(frame.Pts * reader.Info.TimeBase.Value, frame.Time.TotalSeconds, 6);
                Assert.False(frame.Damaged, $"frame {frame.Index} of a clean clip reported as damaged");
                times.Add(frame.Pts * reader.Info.TimeBase.Value);
            }
        }
        Assert.Equal(expected.Length, times.Count);
        for (var i = 0; i < times.Count; i++) Assert.Equal(expected[i], times[i], 5);
    }

    /// <summary>
    /// Bit flips in the key frame: ffmpeg conceals the errors and flags the frames it decoded with errors; those and every
    /// frame predicted from them until the next key frame are Damaged, and the frames of the next GOP are not.
    /// </summary>
    [Fact]
    public void FramesWithDecodingErrorsAndTheirPredictedSuccessorsAreDamaged()
    {
        using var tmp = new TempDir();
        var clean = tmp.File("clean.mp4");
        Tool.Ffmpeg(["-i", Clips.Shared("talk_small.mp4"), "-t", "1.2", "-vf", "scale=160:-2", "-an", "-c:v", "libx264", "-preset", "ultrafast",
            "-threads", "1", "-g", "15", "-bf", "0", "-fflags", "+bitexact", "-flags:v", "+bitexact", clean]);
        var keys = Tool.Run("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pos,size,flags", "-of", "csv=p=0", clean)
            .StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(',')).ToList();
        Assert.StartsWith("K", keys[0][2]);
        var data = File.ReadAllBytes(clean);
        var (pos, size) = (long.Parse(keys[0][1]), int.Parse(keys[0][0]));
        var rng = new Random(3);
        // past the slice header, so the frame still decodes (with concealment) instead of being dropped
        for (var i = 0; i < 12; i++) data[pos + size / 4 + rng.Next(size / 2)] ^= (byte)(1 << rng.Next(8));
        var damagedClip = tmp.File("damaged.mp4");
        File.WriteAllBytes(damagedClip, data);

        using var reader = new VideoReader(damagedClip);
        var flags = new List<bool>();
        foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken))
            using (frame) flags.Add(frame.Damaged);
        Assert.Equal(keys.Count, flags.Count);
        var secondKey = keys.FindIndex(1, k => k[2].StartsWith('K'));
        Assert.True(flags[0], "the damaged key frame itself");
        Assert.All(flags.Take(secondKey), Assert.True);
        Assert.All(flags.Skip(secondKey), Assert.False);
    }

    [Fact]
    public void PixelsMatchAnIndependentDecode()
    {
        var path = Clips.Shared("talk_small.mp4");
        using var reader = new VideoReader(path);
        using var first = reader.ReadFrames(TestContext.Current.CancellationToken).First();
        using var expected = Clips.FirstFrameGray(path, reader.Info.Width, reader.Info.Height);
        using var gray = new Mat();
        Cv2.CvtColor(first.Image, gray, ColorConversionCodes.BGR2GRAY);
        using var diff = new Mat();
        Cv2.Absdiff(gray, expected, diff);
        Assert.True(Cv2.Mean(diff).Val0 < 2.0, $"mean abs diff {Cv2.Mean(diff).Val0}");
    }

    /// <summary>Disposed frames' buffers are reused for later frames, and every frame still holds its own picture.</summary>
    [Fact]
    public void ReusedFrameBuffers_HoldTheSamePicturesAsFreshOnes()
    {
        var path = Clips.Shared("talk_small.mp4");
        static string Hash(Mat m)
        {
            var bytes = new byte[m.Total() * m.ElemSize()];
            System.Runtime.InteropServices.Marshal.Copy(m.Data, bytes, 0, bytes.Length);
            return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(bytes));
        }
        var ct = TestContext.Current.CancellationToken;
        // Held: no frame is disposed before the read ends, so none can lend its buffer.
        List<string> fresh;
        using (var reader = new VideoReader(path))
        {
            var held = reader.ReadFrames(ct).Take(40).ToList();
            fresh = held.Select(f => Hash(f.Image)).ToList();
            Assert.Equal(held.Count, held.Select(f => f.Image.Data).Distinct().Count());
            foreach (var f in held) f.Dispose();
        }
        var reused = new List<string>();
        var buffers = new HashSet<nint>();
        using (var reader = new VideoReader(path))
            foreach (var frame in reader.ReadFrames(ct).Take(40))
            {
                buffers.Add(frame.Image.Data);
                reused.Add(Hash(frame.Image));
                frame.Dispose();
                Assert.Null(frame.Image);
            }
        Assert.Equal(fresh, reused);
        Assert.True(buffers.Count <= 2, $"{buffers.Count} buffers for 40 frames disposed one by one");
    }

    [Fact]
    public void ReadsVariableFrameRateTimestamps()
    {
        using var dir = new TempDir();
        var vfr = Clips.Vfr(dir);
        var expected = Tool.FrameTimes(vfr);
        using var reader = new VideoReader(vfr);
        Assert.True(reader.Info.IsVariableFrameRate);
        var times = reader.ReadFrames(TestContext.Current.CancellationToken).Select(f => { using (f) return f.Time.TotalSeconds; }).ToArray();
        Assert.Equal(expected.Length, times.Length);
        for (var i = 0; i < times.Length; i++) Assert.Equal(expected[i], times[i], 6);
    }

    [Fact]
    public void RotatedClipIsReadUpright()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d13_portrait_noaudio.mp4", 0.3, scale: "180:320");
        var rotated = dir.File("rot.mp4");
        Tool.Ffmpeg("-i", clip, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated);
        using var reader = new VideoReader(rotated);
        using var frame = reader.ReadFrames(TestContext.Current.CancellationToken).First();
        Assert.Equal(320, frame.Image.Width);
        Assert.Equal(180, frame.Image.Height);
        using var expected = Clips.FirstFrameGray(rotated, 320, 180);
        using var gray = new Mat();
        Cv2.CvtColor(frame.Image, gray, ColorConversionCodes.BGR2GRAY);
        using var diff = new Mat();
        Cv2.Absdiff(gray, expected, diff);
        Assert.True(Cv2.Mean(diff).Val0 < 2.0, $"mean abs diff {Cv2.Mean(diff).Val0}");
    }

    [Fact]
    public void AbandonedEnumerationStopsFfmpeg()
    {
        using var dir = new TempDir();
        var path = Clips.UniqueLink(dir, "talk_d3.mp4");
        using var reader = new VideoReader(path);
        var n = 0;
        List<int> ffmpeg = [];
        foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken))
        {
            frame.Dispose();
            if (++n == 1) ffmpeg = Clips.ChildProcessesUsing(path);
            if (n == 3) break;
        }
        Assert.Equal(3, n);
        Assert.NotEmpty(ffmpeg);
        Assert.Empty(Clips.StillPresent(ffmpeg));
    }

    [Fact]
    public void CancellationStopsFfmpeg()
    {
        using var dir = new TempDir();
        var path = Clips.UniqueLink(dir, "talk_d3.mp4");
        using var reader = new VideoReader(path);
        using var cts = new CancellationTokenSource();
        var n = 0;
        List<int> ffmpeg = [];
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            foreach (var frame in reader.ReadFrames(cts.Token))
            {
                frame.Dispose();
                if (++n == 1) ffmpeg = Clips.ChildProcessesUsing(path);
                if (n == 2) cts.Cancel();
            }
        });
        Assert.Equal(2, n);
        Assert.NotEmpty(ffmpeg);
        Assert.Empty(Clips.StillPresent(ffmpeg));
    }
}
