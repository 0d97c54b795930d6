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
/// (<see cref="Windows"/>); see <see cref="FindRaw"/> for how the finds are combined. Each is drawn into just the
/// part of the 512² input it fills (<see cref="SsdTile.Part"/>): the black face-api puts below a wide frame is not
/// computed.
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

    /// <summary>The network's work for <see cref="FindRaw"/> on a frame of this size, in 512² passes.</summary>
    public static double FullSearchWork(int width, int height) => Regions(width, height).Sum(r => SsdTile.Fit(r).Work);

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

    /// <summary>The network over regions of a frame, each shrunk to fit 512² (<see cref="SsdTile.Fit"/>); boxes in each region's pixels.</summary>
    private List<SsdFace>[] Search(Mat frame, IReadOnlyList<Rect> regions) => Search(frame, regions.Select(r => SsdTile.Fit(r)).ToList());

    /// <summary>
    /// The network over tiles of a frame, each alone in its input: the tile's region shrunk (OpenCV area
    /// resampling) to its scale and written straight into the input tensor's memory (no intermediate copies) at the
    /// top-left, black around; the network then reads it without resampling. Boxes come back in each region's pixels.
    /// </summary>
    internal unsafe List<SsdFace>[] Search(Mat frame, IReadOnlyList<SsdTile> tiles)
    {
        using var bgrFrame = frame.Channels() == 4 ? frame.CvtColor(ColorConversionCodes.BGRA2BGR) : null;
        var bgr = bgrFrame ?? frame;
        var result = new List<SsdFace>[tiles.Count];
        if (tiles.Count == 0) return result;
        using var scope = torch.NewDisposeScope();
        var inputs = new torch.Tensor[tiles.Count];
        for (var i = 0; i < tiles.Count; i++)
        {
            var tile = tiles[i];
            var placed = tile.Placed;
            var hwc = torch.zeros([1, tile.Input.Height, tile.Input.Width, 3], torch.ScalarType.Byte);
            fixed (byte* data = hwc.bytes)
            {
                using var input = Mat.FromPixelData(tile.Input.Height, tile.Input.Width, MatType.CV_8UC3, (IntPtr)data);
                using var view = new Mat(bgr, tile.Region);
                using var place = new Mat(input, new Rect(0, 0, placed.Width, placed.Height));
                if (placed != tile.Region.Size) Cv2.Resize(view, place, placed, 0, 0, InterpolationFlags.Area);
                else view.CopyTo(place);
                Cv2.CvtColor(place, place, ColorConversionCodes.BGR2RGB);
            }
            inputs[i] = hwc.permute(0, 3, 1, 2);
        }
        // One device call per frame, but one tile per forward: on CPU a batch of 512² inputs costs more per input
        // than single passes (its activations no longer stay in cache; see `make bench`'s per-frame SSD CPU row),
        // and the results are the same.
        var found = device.Run(() => inputs.Select(x => net.DetectInputs(x, minConfidence)[0]).ToArray());
        for (var i = 0; i < tiles.Count; i++)
        {
            var (r, p) = (tiles[i].Region, tiles[i].Placed);
            double sx = (double)r.Width / p.Width, sy = (double)r.Height / p.Height;
            result[i] = found[i].Select(f => new SsdFace((float)(f.X * sx), (float)(f.Y * sy), (float)(f.Width * sx), (float)(f.Height * sy), f.Score)).ToList();
        }
        return result;
    }

    public void Dispose() { }
}

/// <summary>
/// A frame region searched by the SSD alone in its input: shrunk to <paramref name="Scale"/> (never enlarged) and
/// drawn at the top-left of an <paramref name="Input"/>-sized input, black around.
/// </summary>
internal readonly record struct SsdTile(Rect Region, double Scale, Size Input)
{
    /// <summary>
    /// Black pixels a part input keeps right of and below its picture (<see cref="Part"/>). The network there sees
    /// the black a 512² input has around a smaller picture, not its own zero padding: with this margin, a part finds
    /// what the picture finds in a 512² input (no face lost or added, boxes within IoU 0.98 on average, scores within
    /// 0.005, over face and random squares of every shared clip), where without it faces came and went at its edges.
    /// </summary>
    public const int Margin = SsdMobilenetv1.PartAlignment;

    /// <summary>
    /// The region shrunk so its long side fits 512, as face-api does with an image, drawn in the part of the 512²
    /// input it needs (its short side's black is not computed: a quarter to half of a pass on a wide frame).
    /// </summary>
    public static SsdTile Fit(Rect region, int side = SsdMobilenetv1.InputSize) =>
        Part(region, (double)side / Math.Max(region.Width, region.Height));

    /// <summary>
    /// The region at <paramref name="scale"/> (at most 1) as a top-left part of the 512² input of its own size: the
    /// shrunk region and <see cref="Margin"/> black pixels right and below, rounded up to the network's alignment,
    /// at most 512² (where the picture reaches that, it has the network's own padding beside it, as in face-api's
    /// input; a larger picture is the caller's error).
    /// </summary>
    public static SsdTile Part(Rect region, double scale)
    {
        scale = Math.Min(1.0, scale);
        var placed = PlacedSize(region, scale);
        if (Math.Max(placed.Width, placed.Height) > SsdMobilenetv1.InputSize)
            throw new ArgumentException($"a {region.Width}×{region.Height} region at scale {scale:0.###} does not fit the network's input");
        static int Align(int n) => Math.Min(SsdMobilenetv1.InputSize, (n + SsdMobilenetv1.PartAlignment - 1) / SsdMobilenetv1.PartAlignment * SsdMobilenetv1.PartAlignment);
        return new(region, scale, new Size(Align(placed.Width + Margin), Align(placed.Height + Margin)));
    }

    /// <summary>The shrunk region's size in the input.</summary>
    public Size Placed => PlacedSize(Region, Scale);

    /// <summary>The network's work for this tile, in 512² passes.</summary>
    public double Work => (double)Input.Width * Input.Height / (SsdMobilenetv1.InputSize * SsdMobilenetv1.InputSize);

    private static Size PlacedSize(Rect r, double scale) =>
        scale >= 1 ? r.Size : new Size(Math.Max(1, (int)Math.Round(r.Width * scale)), Math.Max(1, (int)Math.Round(r.Height * scale)));
}
