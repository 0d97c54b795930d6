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
    /// </summary>
    public IReadOnlyList<SsdFace> FindRaw(Mat bgr)
    {
        var found = FindIn(bgr).ToList();
        foreach (var win in Windows(bgr.Width, bgr.Height))
        {
            using var view = new Mat(bgr, win);
            float margin = 0.01f * win.Width;
            foreach (var f in FindIn(view))
            {
                bool cut = (win.Left > 0 && f.X <= margin) || (win.Top > 0 && f.Y <= margin)
                    || (win.Right < bgr.Width && f.Right >= win.Width - margin)
                    || (win.Bottom < bgr.Height && f.Bottom >= win.Height - margin);
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

        static FaceBox Box(SsdFace f) => new(f.X, f.Y, f.Right, f.Bottom, f.Score);
    }

    /// <summary>One network pass over an image (a frame or a window of one), boxes in its pixels.</summary>
    private List<SsdFace> FindIn(Mat bgr)
    {
        var longSide = Math.Max(bgr.Width, bgr.Height);
        var scale = Math.Min(1.0, (double)SsdMobilenetv1.InputSize / longSide);
        using var rgb = new Mat();
        if (scale < 1)
        {
            using var small = new Mat();
            var size = new Size(Math.Max(1, (int)Math.Round(bgr.Width * scale)), Math.Max(1, (int)Math.Round(bgr.Height * scale)));
            Cv2.Resize(bgr, small, size, 0, 0, InterpolationFlags.Area);
            Cv2.CvtColor(small, rgb, ColorConversionCodes.BGR2RGB);
        }
        else Cv2.CvtColor(bgr, rgb, bgr.Channels() == 4 ? ColorConversionCodes.BGRA2RGB : ColorConversionCodes.BGR2RGB);
        var bytes = new byte[rgb.Width * rgb.Height * 3];
        if (rgb.IsContinuous()) System.Runtime.InteropServices.Marshal.Copy(rgb.Data, bytes, 0, bytes.Length);
        else for (var y = 0; y < rgb.Height; y++)
            System.Runtime.InteropServices.Marshal.Copy(rgb.Ptr(y), bytes, y * rgb.Width * 3, rgb.Width * 3);
        List<SsdFace> faces;
        using (var scope = torch.NewDisposeScope())
        {
            var t = torch.tensor(bytes, new long[] { 1, rgb.Height, rgb.Width, 3 }, torch.ScalarType.Byte).permute(0, 3, 1, 2);
            faces = device.Run(() => net.Detect(t, minConfidence)[0]);
        }
        double sx = (double)bgr.Width / rgb.Width, sy = (double)bgr.Height / rgb.Height;
        return faces.Select(f => new SsdFace((float)(f.X * sx), (float)(f.Y * sy), (float)(f.Width * sx), (float)(f.Height * sy), f.Score)).ToList();
    }

    public void Dispose() { }
}
