using Deid.Faces;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Faces.Tests;

public class FaceBoxTests
{
    [Fact]
    public void Geometry()
    {
        var b = new FaceBox(10, 20, 50, 100, 0.9f);
        Assert.Equal(40, b.Width);
        Assert.Equal(80, b.Height);
        Assert.Equal(30, b.CenterX);
        Assert.Equal(60, b.CenterY);
        Assert.Equal(3200, b.Area);
        Assert.Equal(new Rect(10, 20, 40, 80), b.ToRect());
        Assert.Equal(new Rect(10, 20, 41, 81), new FaceBox(10.5f, 20.2f, 50.1f, 100.9f, 1).ToRect());

        var s = b.Scale(2);
        Assert.Equal(new FaceBox(-10, -20, 70, 140, 0.9f), s);
        Assert.Equal(new FaceBox(0, 0, 64, 120, 0.9f), s.Clip(64, 120));

        Assert.Equal(1f, FaceBox.IoU(b, b));
        Assert.Equal(0f, FaceBox.IoU(b, new FaceBox(60, 0, 70, 10, 1)));
        Assert.Equal(0.25f, FaceBox.IoU(b, s), 5);
    }

    [Fact]
    public void LandmarksNeed68Points()
    {
        var ex = Assert.Throws<ArgumentException>(() => new FaceLandmarks(new Point2f[5]));
        Assert.Contains("68", ex.Message);
        var pts = Enumerable.Range(0, 68).Select(i => new Point2f(i, 2 * i)).ToArray();
        Assert.Equal(new FaceBox(0, 0, 67, 134, 1), new FaceLandmarks(pts).Bounds());
    }
}

public class DetectionTests
{
    [Fact]
    public void OneFaceInEachIdentityPhoto()
    {
        using var det = new DlibFaceDetector();
        Assert.NotEmpty(TestMedia.Photos);
        foreach (var photo in TestMedia.Photos)
        {
            using var img = TestMedia.Read(photo);
            var faces = det.Detect(img);
            Assert.True(faces.Count == 1, $"{Path.GetFileName(photo)}: {faces.Count} faces");
            var f = faces[0];
            Assert.InRange(f.Left, 0, img.Width);
            Assert.InRange(f.Right, f.Left + 40, img.Width + 1);
            Assert.InRange(f.Bottom, f.Top + 40, img.Height + 1);
        }
    }

    [Fact]
    public void OneFaceInEveryTalkFrame()
    {
        using var det = new DlibFaceDetector();
        foreach (var frame in TestMedia.Frames("talk_d3.mp4", 6, 60))
        {
            using var img = TestMedia.Read(frame);
            Assert.Single(det.Detect(img));
        }
    }

    [Fact]
    public void SeveralFacesInTheGroupPhoto()
    {
        using var det = new DlibFaceDetector(upsample: 1, maxSide: 2000);
        using var img = TestMedia.Read(TestPaths.Identity("group_t1.jpg"));
        var faces = det.Detect(img);
        Assert.True(faces.Count >= 3, $"{faces.Count} faces");
        for (int i = 1; i < faces.Count; i++) Assert.True(faces[i - 1].Score >= faces[i].Score);
        // distinct people, not one face reported twice
        for (int i = 0; i < faces.Count; i++)
            for (int j = i + 1; j < faces.Count; j++)
                Assert.True(FaceBox.IoU(faces[i], faces[j]) < 0.3);
    }

    [Fact]
    public void DownscaledDetectionMapsBoxesBackToTheFrame()
    {
        var file = TestMedia.Frames("talk_1080p.mp4", 2, 60)[0];
        using var img = TestMedia.Read(file);
        using var fast = new DlibFaceDetector(maxSide: 640);
        using var full = new DlibFaceDetector(maxSide: 4096);
        var a = fast.Detect(img);
        var b = full.Detect(img);
        Assert.Single(a);
        Assert.Single(b);
        Assert.True(FaceBox.IoU(a[0], b[0]) > 0.7, $"{a[0]} vs {b[0]}");
    }

    [Fact]
    public void FewerPyramidLevelsFindOnlyTheSmallerFaces()
    {
        using var det = new DlibFaceDetector(maxSide: int.MaxValue);
        foreach (var frame in TestMedia.Frames("talk_d3.mp4", 3, 60))
        {
            using var img = TestMedia.Read(frame);
            var face = Assert.Single(det.Detect(img));
            // The face at about 90 px: within the first three levels' reach (80 to 115 px), found as all levels find it.
            using var near = new Mat();
            Cv2.Resize(img, near, new Size(), 90.0 / face.Width, 90.0 / face.Width, InterpolationFlags.Area);
            var all = Assert.Single(det.Detect(near));
            var three = Assert.Single(det.Detect(near, maxLevels: 3));
            Assert.True(FaceBox.IoU(all, three) > 0.9, $"{all} vs {three}");
            // At about 200 px it is beyond them.
            using var large = new Mat();
            Cv2.Resize(img, large, new Size(), 200.0 / face.Width, 200.0 / face.Width, InterpolationFlags.Area);
            Assert.Single(det.Detect(large));
            Assert.Empty(det.Detect(large, maxLevels: 3));
        }
        using var grey = new Mat(100, 100, MatType.CV_8UC1, Scalar.All(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => det.Detect(grey, maxLevels: -1));
    }

    [Fact]
    public void RejectsUnusableImages()
    {
        using var det = new DlibFaceDetector();
        using var empty = new Mat();
        Assert.Throws<ArgumentException>(() => det.Detect(empty));
        using var floats = new Mat(64, 64, MatType.CV_32FC3, Scalar.All(0));
        var ex = Assert.Throws<ArgumentException>(() => det.Detect(floats));
        Assert.Contains("8-bit", ex.Message);
        using var blank = new Mat(200, 300, MatType.CV_8UC3, Scalar.All(128));
        Assert.Empty(det.Detect(blank));
        using var grey = new Mat(200, 300, MatType.CV_8UC1, Scalar.All(128));
        Assert.Empty(det.Detect(grey));
    }
}

public class LandmarkTests
{
    [Fact]
    public void LandmarksArePlausible()
    {
        using var det = new DlibFaceDetector();
        var files = TestMedia.Photos.Concat(TestMedia.Frames("talk_d3.mp4", 6, 60)).Concat(TestMedia.Frames("talk_small.mp4", 3, 50));
        foreach (var file in files)
        {
            using var img = TestMedia.Read(file);
            var (box, lm) = TestMedia.Face(img, det);
            Assert.Equal(FaceLandmarks.Count, lm.Points.Length);
            var grown = box.Scale(1.5f);
            foreach (var p in lm.Points)
            {
                Assert.InRange(p.X, grown.Left, grown.Right);
                Assert.InRange(p.Y, grown.Top, grown.Bottom);
            }
            var eyeL = lm.Mean(36, 42);
            var eyeR = lm.Mean(42, 48);
            var nose = lm.Points[30];
            var mouth = lm.Mean(48, 68);
            var chin = lm.Points[8];
            Assert.True(eyeL.X < eyeR.X, file);
            Assert.True(Math.Max(eyeL.Y, eyeR.Y) < nose.Y && nose.Y < mouth.Y && mouth.Y < chin.Y, file);
            Assert.InRange(nose.X, eyeL.X, eyeR.X);
            Assert.True(FaceBox.IoU(box, lm.Bounds()) > 0.4, $"{file}: box {box} vs landmarks {lm.Bounds()}");
        }
    }

    /// <summary>
    /// The shim's flat copy of the trees gives dlib's own landmarks exactly: on detected faces of several clips and
    /// photos, on boxes shifted and grown off them, and on boxes reaching over the image edge (pixels outside read 0).
    /// </summary>
    [Fact]
    public void FlatTreesGiveDlibsOwnLandmarks_BitForBit()
    {
        var predictor = TestMedia.Predictor;
        using var reference = DlibShapePredictor.LoadDlibReference(TestPaths.DlibPredictor);
        var files = TestMedia.Frames("talk_d3.mp4", 4, 40).Concat(TestMedia.Frames("talk_1080p.mp4", 3, 50))
            .Concat(TestMedia.Frames("wide_s13.mp4", 3, 40)).Concat(TestMedia.Photos).ToArray();
        using var det = new DlibFaceDetector();
        int boxes = 0;
        foreach (var file in files)
        {
            using var img = TestMedia.Read(file);
            var found = det.Detect(img);
            var all = found.SelectMany(b => new[]
            {
                b,
                b with { Left = b.Left + b.Width / 3, Right = b.Right + b.Width / 3, Top = b.Top - b.Height / 4, Bottom = b.Bottom - b.Height / 4 },
                b.Scale(1.7f),
                b.Scale(0.6f),
            }).Append(new FaceBox(-50, -40, 120, 150, 0)).Append(new FaceBox(img.Width - 100, img.Height - 90, img.Width + 60, img.Height + 80, 0));
            foreach (var box in all)
            {
                Assert.Equal(reference.Predict(img, box).Points, predictor.Predict(img, box).Points);
                boxes++;
            }
        }
        Assert.True(boxes > 40, $"only {boxes} boxes compared");
    }

    [Fact]
    public void MissingModelFileIsAClearError()
    {
        using var tmp = new TempDir();
        var path = tmp.File("nope.dat");
        var ex = Assert.Throws<FileNotFoundException>(() => DlibShapePredictor.Load(path));
        Assert.Equal($"dlib 68-point model not found at {path}; install Debian's libdlib-data or run `deid models fetch`", ex.Message);
    }

    [Fact]
    public void CorruptModelFileIsAClearError()
    {
        using var tmp = new TempDir();
        var path = tmp.File("bad.dat");
        File.WriteAllText(path, "not a dlib model");
        var ex = Assert.Throws<FaceException>(() => DlibShapePredictor.Load(path));
        Assert.StartsWith($"cannot load the dlib 68-point model {path}: ", ex.Message);
        Assert.DoesNotContain('\n', ex.Message.TrimEnd());
    }

    [Fact]
    public void DefaultPathPrefersDeidModels()
    {
        using var tmp = new TempDir();
        var old = Environment.GetEnvironmentVariable("DEID_MODELS");
        try
        {
            Environment.SetEnvironmentVariable("DEID_MODELS", tmp.Path);
            Assert.Equal(DlibShapePredictor.SystemPath, DlibShapePredictor.DefaultPath());
            File.WriteAllText(tmp.File(DlibShapePredictor.FileName), "x");
            Assert.Equal(tmp.File(DlibShapePredictor.FileName), DlibShapePredictor.DefaultPath());
        }
        finally
        {
            Environment.SetEnvironmentVariable("DEID_MODELS", old);
        }
    }

    [Fact]
    public void PerThreadDetectorsAndASharedPredictorAgreeWithSequentialResults()
    {
        var files = TestMedia.Frames("talk_d3.mp4", 6, 60).Append(TestPaths.Identity("photo_s12.jpg")).ToArray();
        var predictor = TestMedia.Predictor;
        var images = files.Select(TestMedia.Read).ToArray();
        try
        {
            List<(FaceBox, Point2f[])> Run(IEnumerable<Mat> imgs)
            {
                using var det = new DlibFaceDetector();
                var r = new List<(FaceBox, Point2f[])>();
                foreach (var img in imgs)
                    foreach (var box in det.Detect(img))
                        r.Add((box, predictor.Predict(img, box).Points));
                return r;
            }
            var sequential = Run(images);
            // each thread walks all images several times to overlap native calls on the shared predictor
            var tasks = Enumerable.Range(0, 2).Select(t => Task.Run(() =>
                Enumerable.Range(0, 2).SelectMany(_ => Run(t == 0 ? images : images.Reverse())).ToList())).ToArray();
            Task.WaitAll(tasks);
            var forward = tasks[0].Result;
            var backward = tasks[1].Result;
            for (int rep = 0; rep < 2; rep++)
            {
                var chunkF = forward.Skip(rep * sequential.Count).Take(sequential.Count).ToList();
                Assert.Equal(sequential.Select(s => s.Item1), chunkF.Select(s => s.Item1));
                Assert.Equal(sequential.SelectMany(s => s.Item2), chunkF.SelectMany(s => s.Item2));
            }
            Assert.Equal(sequential.Count * 2, backward.Count);
            var seqSet = sequential.Select(s => (s.Item1, string.Join(';', s.Item2))).ToHashSet();
            Assert.All(backward, b => Assert.Contains((b.Item1, string.Join(';', b.Item2)), seqSet));
        }
        finally
        {
            foreach (var m in images) m.Dispose();
        }
    }
}

/// <summary>
/// The shim computes dlib's HOG features with the gradient's orientation looked up in a table instead of dlib's 9 dot
/// products per pixel, and runs dlib's separable filter with rows of zeros skipped: the features and the filter
/// banks' saliency images, and so every detection, must be dlib's bit for bit, on real frames (with the finder's black
/// margin, as it scans them) and on images made to reach every gradient and every column path (widths that leave
/// dlib's 8-pixel loops a remainder).
/// </summary>
public class FhogTableTests
{
    public static TheoryData<string> Clips => new() { "talk_d3.mp4", "talk_1080p.mp4" };

    [Theory]
    [MemberData(nameof(Clips))]
    public void RealFramesGiveDlibsFeatures(string clip)
    {
        foreach (var png in TestMedia.Frames(clip, 3, 40))
        {
            using var bgr = TestMedia.Read(png);
            using var grey = GreyImage.From(bgr);
            foreach (var level in new[] { false, true })
                Assert.Equal(0, DlibFaceDetector.FhogMismatches(grey, level, padding: 10));
            using var padded = new Mat();
            Cv2.CopyMakeBorder(grey, padded, 40, 40, 40, 40, BorderTypes.Constant, Scalar.All(0));
            using var scan = new Mat();
            Cv2.Resize(padded, scan, new Size(padded.Width * 594 / Math.Max(padded.Width, padded.Height), padded.Height * 594 / Math.Max(padded.Width, padded.Height)), 0, 0, InterpolationFlags.Area);
            Assert.Equal(0, DlibFaceDetector.FilterMismatches(scan));
        }
    }

    [Fact]
    public void EveryGradientAndEveryWidthGivesDlibsFeatures()
    {
        var rng = new Random(13);
        foreach (var (w, h) in new[] { (17, 17), (80, 80), (81, 95), (100, 83), (127, 64), (203, 131), (330, 241) })
        {
            // Noise with every step from -255 to 255, an edge at full contrast, and a flat field.
            using var noise = new Mat(h, w, MatType.CV_8UC1);
            var bytes = new byte[w * h];
            rng.NextBytes(bytes);
            for (int i = 0; i < bytes.Length; i += 7) bytes[i] = (byte)(i % 2 == 0 ? 0 : 255);
            System.Runtime.InteropServices.Marshal.Copy(bytes, 0, noise.Data, bytes.Length);
            using var edge = new Mat(h, w, MatType.CV_8UC1, Scalar.All(0));
            edge[new Rect(w / 3, 0, w - w / 3, h)].SetTo(Scalar.All(255));
            using var flat = new Mat(h, w, MatType.CV_8UC1, Scalar.All(90));
            // A view into a wider buffer: the stride is not the width.
            using var wide = new Mat(h, w + 13, MatType.CV_8UC1, Scalar.All(7));
            noise.CopyTo(wide[new Rect(5, 0, w, h)]);
            using var view = new Mat(wide, new Rect(5, 0, w, h));
            foreach (var img in new[] { noise, edge, flat, view })
            {
                foreach (var level in new[] { false, true })
                    foreach (var padding in new[] { 1, 10 })
                        Assert.Equal(0, DlibFaceDetector.FhogMismatches(img, level, padding));
                Assert.Equal(0, DlibFaceDetector.FilterMismatches(img));
            }
        }
    }
}

public unsafe class FhogTableCoverageTests
{
    /// <summary>
    /// Both builds of the shim (x86-64 baseline and AVX2+FMA), loaded side by side, each against dlib's own code as it
    /// was compiled into that build: the process's own detector uses only one of them, and their arithmetic differs
    /// (the AVX2 build fuses multiply-adds where dlib's loops let the compiler), so each build's table and filter must
    /// match that build's dlib.
    /// </summary>
    [Fact]
    public void EveryBuildOfTheShimGivesDlibsFeaturesAndSaliency()
    {
        using var lattice = GradientLattice();
        using var frame = GreyImage.From(TestMedia.Read(TestMedia.Frames("talk_d3.mp4", 3, 40)[1]));
        var builds = new List<string> { "libdeid_dlib.so" };
        if (System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported) builds.Add("libdeid_dlib_avx2.so");
        foreach (var file in builds)
        {
            var path = Path.Combine(AppContext.BaseDirectory, file);
            Assert.True(File.Exists(path), path);
            var lib = System.Runtime.InteropServices.NativeLibrary.Load(path);
            try
            {
                var fhog = (delegate* unmanaged<byte*, int, int, int, int, int, long>)System.Runtime.InteropServices.NativeLibrary.GetExport(lib, "deid_fhog_mismatches");
                var filter = (delegate* unmanaged<byte*, int, int, int, long>)System.Runtime.InteropServices.NativeLibrary.GetExport(lib, "deid_filter_mismatches");
                foreach (var img in new[] { lattice, frame })
                {
                    byte* data = (byte*)img.Data;
                    int w = img.Width, h = img.Height, step = (int)img.Step();
                    Assert.True(fhog(data, w, h, step, 0, 10) == 0, $"{file}: features of the first level");
                    Assert.True(fhog(data, w, h, step, 1, 10) == 0, $"{file}: features of a lower level");
                    Assert.True(filter(data, w, h, step) == 0, $"{file}: saliency");
                }
            }
            finally { System.Runtime.InteropServices.NativeLibrary.Free(lib); }
        }
    }

    /// <summary>Every one of the 511² gradient pairs at a pixel of its own (see <see cref="EveryGradientPairGivesDlibsFeatures"/>).</summary>
    private static Mat GradientLattice()
    {
        const int n = 511, side = 3 * n + 2;
        var bytes = new byte[side * side];
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++)
            {
                int gx = i - 255, gy = j - 255, x = 3 * i + 1, y = 3 * j + 1;
                int left = Math.Max(0, -gx), top = Math.Max(0, -gy);
                bytes[y * side + x - 1] = (byte)left;
                bytes[y * side + x + 1] = (byte)(left + gx);
                bytes[(y - 1) * side + x] = (byte)top;
                bytes[(y + 1) * side + x] = (byte)(top + gy);
                bytes[y * side + x] = 128;
            }
        var img = new Mat(side, side, MatType.CV_8UC1);
        System.Runtime.InteropServices.Marshal.Copy(bytes, 0, img.Data, bytes.Length);
        return img;
    }

    /// <summary>
    /// Every one of the 511² gradient pairs at a pixel of its own: centres 3 px apart, each with its own left, right,
    /// top and bottom neighbours set to make the pair, so the table is compared with dlib's loop on all of it.
    /// </summary>
    [Fact]
    public void EveryGradientPairGivesDlibsFeatures()
    {
        using var img = GradientLattice();
        Assert.Equal(0, DlibFaceDetector.FhogMismatches(img, asPyramidLevel: false, padding: 10));
        Assert.Equal(0, DlibFaceDetector.FhogMismatches(img, asPyramidLevel: true, padding: 10));
    }
}
