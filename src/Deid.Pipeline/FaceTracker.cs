using Deid.Faces;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>One detector hit in one frame; Landmarks is null where the shape predictor failed.</summary>
public sealed record FaceDetection(FaceBox Box, FaceLandmarks? Landmarks);

/// <summary>The tracker's verdict for one face in one frame.</summary>
public sealed record TrackedFace(int TrackId, FaceBox Box, Point2f[]? Landmarks, FaceHandling Handling);

/// <summary>
/// Gives every face a track id that stays stable across frames (optimal matching on IoU plus centre distance,
/// so fast motion and crossing faces keep their ids), smooths landmarks per track with One-Euro filters, and keeps a track alive when
/// the detector misses it: for up to MaxMissing frames it is extrapolated at constant (damped) velocity and
/// still processed ("tracked"); for MaxMissing more frames its last region is blurred ("fallback-blurred");
/// only then is it dropped. Over-blurring an empty region is the price of never leaving a known face visible.
/// </summary>
public sealed class FaceTracker(int maxMissingFrames = 10, double minIoU = 0.2, double maxCenterDistance = 0.5)
{
    private sealed class Track
    {
        public required int Id;
        public FaceBox Box;
        public Point2f[]? Landmarks;
        public readonly LandmarkSmoother Smoother = new();
        public Point2f Velocity;     // pixels per frame, of the landmark centroid
        public int Missing;
        public long LastSeenFrame;
    }

    private readonly List<Track> _tracks = [];
    private int _nextId = 1;
    private long _frame = -1;

    public int TracksCreated => _nextId - 1;
    public int ActiveTracks => _tracks.Count;
    public int MaxMissingFrames { get; } = Math.Max(0, maxMissingFrames);
    /// <summary>Frames a lost track's region stays blurred after extrapolation ends (at least one).</summary>
    public int FallbackFrames => Math.Max(1, MaxMissingFrames);

    public IReadOnlyList<TrackedFace> Update(IReadOnlyList<FaceDetection> detections, double timeSeconds)
    {
        _frame++;
        var result = new List<TrackedFace>();
        var assignedTrack = new Track?[detections.Count];
        var trackUsed = new bool[_tracks.Count];

        var score = new double[_tracks.Count, detections.Count];
        var eligible = new bool[_tracks.Count, detections.Count];
        for (var t = 0; t < _tracks.Count; t++)
        {
            var predicted = Shift(_tracks[t].Box, _tracks[t].Velocity, 1);
            for (var d = 0; d < detections.Count; d++)
            {
                var box = detections[d].Box;
                var iou = FaceBox.IoU(predicted, box);
                var dist = Math.Sqrt(Sq(predicted.CenterX - box.CenterX) + Sq(predicted.CenterY - box.CenterY))
                           / Math.Max(1.0, Math.Max(predicted.Width, box.Width));
                score[t, d] = iou + (1 - dist);
                eligible[t, d] = iou >= minIoU || dist < maxCenterDistance;
            }
        }
        var match = Assignment.Maximize(score, eligible);
        for (var t = 0; t < match.Length; t++)
        {
            if (match[t] < 0) continue;
            trackUsed[t] = true;
            assignedTrack[match[t]] = _tracks[t];
        }

        for (var d = 0; d < detections.Count; d++)
        {
            var det = detections[d];
            var track = assignedTrack[d];
            if (track == null)
            {
                track = new Track { Id = _nextId++ };
                _tracks.Add(track);
            }
            var gap = Math.Max(1, _frame - track.LastSeenFrame);
            track.Box = det.Box;
            track.Missing = 0;
            if (det.Landmarks != null)
            {
                // A track that comes back after missing frames keeps its filter: the timestamps say how long it was gone.
                var smoothed = track.Smoother.Filter(det.Landmarks.Points, timeSeconds);
                if (track.Landmarks != null)
                {
                    var moved = Centroid(smoothed) - Centroid(track.Landmarks);
                    var v = new Point2f(moved.X / gap, moved.Y / gap);
                    track.Velocity = new Point2f(0.5f * track.Velocity.X + 0.5f * v.X, 0.5f * track.Velocity.Y + 0.5f * v.Y);
                }
                track.Landmarks = smoothed;
                track.LastSeenFrame = _frame;
                result.Add(new TrackedFace(track.Id, det.Box, smoothed, FaceHandling.Replaced));
            }
            else
            {
                // Landmarks failed: the box is all we trust now, and a blur is what it gets.
                track.Landmarks = null;
                track.Velocity = default;
                track.Smoother.Reset();
                track.LastSeenFrame = _frame;
                result.Add(new TrackedFace(track.Id, det.Box, null, FaceHandling.FallbackBlurred));
            }
        }

        for (var t = _tracks.Count - 1; t >= 0; t--)
        {
            if (t < trackUsed.Length && trackUsed[t]) continue;
            var track = _tracks[t];
            if (track.LastSeenFrame == _frame) continue; // created this frame
            track.Missing++;
            if (track.Missing > MaxMissingFrames + FallbackFrames)
            {
                _tracks.RemoveAt(t);
                continue;
            }
            if (track.Missing <= MaxMissingFrames && track.Landmarks != null)
            {
                // Damped constant velocity: a face the detector lost is more likely to slow down than to keep going.
                track.Velocity = new Point2f(track.Velocity.X * 0.85f, track.Velocity.Y * 0.85f);
                track.Landmarks = track.Landmarks.Select(p => p + track.Velocity).ToArray();
                track.Box = Shift(track.Box, track.Velocity, 1);
                result.Add(new TrackedFace(track.Id, track.Box, track.Landmarks, FaceHandling.Tracked));
            }
            else
            {
                result.Add(new TrackedFace(track.Id, track.Box, null, FaceHandling.FallbackBlurred));
            }
        }
        result.Sort((a, b) => a.TrackId.CompareTo(b.TrackId));
        return result;
    }

    private static double Sq(double x) => x * x;

    private static FaceBox Shift(FaceBox b, Point2f v, float frames) =>
        b with { Left = b.Left + v.X * frames, Right = b.Right + v.X * frames, Top = b.Top + v.Y * frames, Bottom = b.Bottom + v.Y * frames };

    private static Point2f Centroid(Point2f[] pts)
    {
        float x = 0, y = 0;
        foreach (var p in pts) { x += p.X; y += p.Y; }
        return new Point2f(x / pts.Length, y / pts.Length);
    }
}
