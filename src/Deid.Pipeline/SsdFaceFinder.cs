using Deid.Faces;
using Deid.Models.FaceApi;
using OpenCvSharp;
using TorchSharp;

namespace Deid.Pipeline;

/// <summary>
/// SSD-MobileNetV1 on the frame, shrunk first so its long side is the network's 512 (OpenCV area resampling: the
/// network would otherwise sample a 1080p frame sparsely). Boxes are mapped to dlib's framing by
/// <see cref="ToDlibBox"/>. The network is shared by all workers; calls into it go through the one <see cref="DeviceExecutor"/> (it uses every core
/// through torch's own threads), the frame conversion around it is not.
/// On a frame much wider than tall (or taller than wide) the whole frame leaves a face few input pixels, where
/// SSD's score drops below its threshold (talk_1080p's speaker: 0.31-0.50 in its first 29 frames, 0.90-0.96 in a
/// square crop of the same frames). So such frames are also searched in overlapping square windows
/// (<see cref="Windows"/>); see <see cref="FindRaw"/> for how the finds are combined.
/// </summary>
public sealed class SsdFaceFinder(SsdMobilenetv1 net, DeviceExecutor device, float minConfidence = SsdMobilenetv1.DefaultMinConfidence) : IFaceFinder
{
    /// <summary>
    /// SSD box → dlib HOG box, as fractions of the SSD box: centre shift (x by width, y by height) and size.
    /// SSD boxes are taller than dlib's square ones and reach higher up the forehead, so dlib's sits lower and is
    /// shorter. Medians over 398 faces both detect (the five shared photos and every third frame of the six shared
    /// clips; per-source medians dy 0.07-0.17, sh 0.76-0.96). Landmarks predicted from the mapped box are
    /// 0.021 inter-ocular distances (mean; p95 0.047) from those predicted from dlib's own box, against 0.053
    /// (p95 0.181) from the raw SSD box.
    /// </summary>
    public static (float Dx, float Dy, float Sw, float Sh) DlibFromSsd { get; } = (0.02f, 0.08f, 1.05f, 0.89f);

    /// <summary>Long side / short side from which square windows are searched as well as the whole frame.</summary>
    public const double WindowAspect = 1.25;

    /// <summary>Two finds overlapping by this IoU or more are one face (the higher score is kept).</summary>
    public const float MergeIoU = 0.3f;

    public static FaceBox ToDlibBox(SsdFace f)
    {
        var (dx, dy, sw, sh) = DlibFromSsd;
        float cx = f.X + f.Width * (0.5f + dx), cy = f.Y + f.Height * (0.5f + dy);
        float hw = f.Width * sw / 2, hh = f.Height * sh / 2;
        return new FaceBox(cx - hw, cy - hh, cx + hw, cy + hh, f.Score);
    }

    public IReadOnlyList<FaceBox> Find(Mat bgr) => FindRaw(bgr).Select(ToDlibBox).ToList();

    /// <summary>
    /// Square windows (side = the frame's short side) along its long side, consecutive ones overlapping by at least
    /// half a side, the first and last flush with the frame's ends; none for a frame near square.
    /// </summary>
    public static IReadOnlyList<Rect> Windows(int width, int height)
    {
        int side = Math.Min(width, height), length = Math.Max(width, height);
        if (length < WindowAspect * side) return [];
        var count = (int)Math.Ceiling((length - side) / (side / 2.0)) + 1;
        var windows = new List<Rect>(count);
        for (var i = 0; i < count; i++)
        {
            var at = (int)Math.Round((double)i * (length - side) / (count - 1));
            windows.Add(width >= height ? new Rect(at, 0, side, side) : new Rect(0, at, side, side));
        }
        return windows;
    }

    /// <summary>
    /// The network's own boxes in frame coordinates (before the dlib mapping). The whole frame is searched, plus
    /// <see cref="Windows"/>; a window's find that touches one of its inner edges (a side inside the frame) is a cut
    /// face and dropped: the half-side overlap puts every face up to half a side wide whole in some window, and a
    /// larger one is large in the whole-frame input too. The rest are merged by score (<see cref="Merge"/>).
    /// The whole frame and its windows are prepared together and searched in one device call per frame.
    /// </summary>
    public IReadOnlyList<SsdFace> FindRaw(Mat bgr)
    {
        var regions = Regions(bgr.Width, bgr.Height);
        return Combine(bgr.Width, bgr.Height, regions, Search(bgr, regions));
    }

    /// <summary>What <see cref="FindRaw"/> searches: the whole frame first, then its <see cref="Windows"/>.</summary>
    public static IReadOnlyList<Rect> Regions(int width, int height) => [new Rect(0, 0, width, height), .. Windows(width, height)];

    /// <summary>
    /// <see cref="FindRaw"/>'s combination of the finds in each of <see cref="Regions"/> (boxes in that region's
    /// pixels) into frame coordinates: finds cut by a region's inner edge (one inside the frame) dropped, the rest
    /// merged. The whole frame has no inner edge, so its finds all stay.
    /// </summary>
    public static List<SsdFace> Combine(int width, int height, IReadOnlyList<Rect> regions, IReadOnlyList<IReadOnlyList<SsdFace>> perRegion)
    {
        var found = new List<SsdFace>();
        for (var i = 0; i < regions.Count; i++)
        {
            var win = regions[i];
            float margin = 0.01f * win.Width;
            foreach (var f in perRegion[i])
            {
                bool cut = (win.Left > 0 && f.X <= margin) || (win.Top > 0 && f.Y <= margin)
                    || (win.Right < width && f.Right >= win.Width - margin)
                    || (win.Bottom < height && f.Bottom >= win.Height - margin);
                if (!cut) found.Add(f with { X = f.X + win.X, Y = f.Y + win.Y });
            }
        }
        return Merge(found);
    }

    /// <summary>Strongest first; a find overlapping a stronger kept one by <see cref="MergeIoU"/> or more is dropped.</summary>
    public static List<SsdFace> Merge(IEnumerable<SsdFace> faces)
    {
        var kept = new List<SsdFace>();
        foreach (var f in faces.OrderByDescending(f => f.Score))
            if (!kept.Any(k => FaceBox.IoU(Box(k), Box(f)) >= MergeIoU)) kept.Add(f);
        return kept;
    }

    /// <summary>An SSD find as a box in the network's own framing (no dlib mapping: for overlaps and regions).</summary>
    internal static FaceBox Box(SsdFace f) => new(f.X, f.Y, f.Right, f.Bottom, f.Score);

    /// <summary>The network over regions of a frame, each alone in its 512² input; boxes in each region's pixels.</summary>
    private List<SsdFace>[] Search(Mat frame, IReadOnlyList<Rect> regions) =>
        Search(frame, regions.Select((r, i) => new SsdTile(r, i, default, SsdMobilenetv1.InputSize)).ToList());

    /// <summary>
    /// The network over tiles of a frame: each tile's region is shrunk (OpenCV area resampling) to fit its side and
    /// written straight into the batch tensor's memory (no intermediate copies) at its place in its 512² input,
    /// black around, which is the input face-api draws; the network then reads it without resampling. Boxes come
    /// back in each tile region's pixels; where tiles share an input, a find is the tile's whose area holds its centre,
    /// clipped to it.
    /// </summary>
    internal unsafe List<SsdFace>[] Search(Mat frame, IReadOnlyList<SsdTile> tiles)
    {
        const int side = SsdMobilenetv1.InputSize;
        using var bgrFrame = frame.Channels() == 4 ? frame.CvtColor(ColorConversionCodes.BGRA2BGR) : null;
        var bgr = bgrFrame ?? frame;
        int inputs = tiles.Count == 0 ? 0 : tiles.Max(t => t.Input) + 1;
        var placed = new Rect[tiles.Count];
        var result = new List<SsdFace>[tiles.Count];
        if (inputs == 0) return result;
        using var scope = torch.NewDisposeScope();
        var hwc = torch.zeros([inputs, side, side, 3], torch.ScalarType.Byte);
        fixed (byte* data = hwc.bytes)
        {
            using var squares = Mat.FromPixelData(inputs * side, side, MatType.CV_8UC3, (IntPtr)data);
            for (var i = 0; i < tiles.Count; i++)
            {
                var (r, input, at, tileSide) = tiles[i];
                var scale = Math.Min(1.0, (double)tileSide / Math.Max(r.Width, r.Height));
                var size = new Size(Math.Max(1, (int)Math.Round(r.Width * scale)), Math.Max(1, (int)Math.Round(r.Height * scale)));
                placed[i] = new Rect(at.X, at.Y, size.Width, size.Height);
                using var view = new Mat(bgr, r);
                using var square = new Mat(squares, new Rect(at.X, input * side + at.Y, size.Width, size.Height));
                if (scale < 1) Cv2.Resize(view, square, size, 0, 0, InterpolationFlags.Area);
                else view.CopyTo(square);
            }
            Cv2.CvtColor(squares, squares, ColorConversionCodes.BGR2RGB);
        }
        var input4 = hwc.permute(0, 3, 1, 2);
        // One device call per frame, but one square per forward: on CPU a batch of four 512² squares costs more
        // per square than four single passes (its activations no longer stay in cache; see `make bench`'s
        // per-frame SSD CPU row), and the results are the same.
        var found = device.Run(() =>
            Enumerable.Range(0, inputs).Select(i => net.Detect(input4[i..(i + 1)], minConfidence)[0]).ToArray());
        for (var i = 0; i < tiles.Count; i++)
        {
            var p = placed[i];
            double sx = (double)tiles[i].Region.Width / p.Width, sy = (double)tiles[i].Region.Height / p.Height;
            result[i] = [];
            bool alone = tiles.Count(t => t.Input == tiles[i].Input) == 1;
            foreach (var f in found[tiles[i].Input])
            {
                // A tile alone in its input keeps the network's boxes as they are (face-api's output).
                if (alone) { result[i].Add(new SsdFace((float)((f.X - p.X) * sx), (float)((f.Y - p.Y) * sy), (float)(f.Width * sx), (float)(f.Height * sy), f.Score)); continue; }
                float cx = f.X + f.Width / 2, cy = f.Y + f.Height / 2;
                if (cx < p.Left || cx >= p.Right || cy < p.Top || cy >= p.Bottom) continue;
                float x0 = Math.Max(f.X, p.Left), y0 = Math.Max(f.Y, p.Top), x1 = Math.Min(f.Right, p.Right), y1 = Math.Min(f.Bottom, p.Bottom);
                result[i].Add(new SsdFace((float)((x0 - p.X) * sx), (float)((y0 - p.Y) * sy), (float)((x1 - x0) * sx), (float)((y1 - y0) * sy), f.Score));
            }
        }
        return result;
    }

    public void Dispose() { }
}

/// <summary>A frame region searched by the SSD: shrunk to fit <paramref name="Side"/>² at <paramref name="At"/> in batch input <paramref name="Input"/>.</summary>
internal readonly record struct SsdTile(Rect Region, int Input, Point At, int Side);
