namespace Deid.Faces;

/// <summary>
/// Optimal one-to-one assignment (Hungarian method with potentials, O(n²·m)). Greedy matching by best pair
/// can hand a face the track of its neighbour when two faces cross and then leave the neighbour unmatched,
/// which starts a new track id and resets its smoothing; the optimal assignment keeps both. The one matcher
/// of faces between frames (the pipeline's tracker) and between videos (evaluation's source ↔ output faces).
/// </summary>
public static class Assignment
{
    /// <summary>
    /// Pairs boxes of <paramref name="a"/> with boxes of <paramref name="b"/> one to one, only pairs overlapping by
    /// IoU ≥ <paramref name="minIoU"/>, as many as possible and then the largest total IoU. Returns, for each box
    /// of a, the index of its box in b or -1.
    /// </summary>
    public static int[] MatchByIoU(IReadOnlyList<FaceBox> a, IReadOnlyList<FaceBox> b, float minIoU)
    {
        var score = new double[a.Count, b.Count];
        var eligible = new bool[a.Count, b.Count];
        for (var i = 0; i < a.Count; i++)
            for (var j = 0; j < b.Count; j++)
            {
                score[i, j] = FaceBox.IoU(a[i], b[j]);
                eligible[i, j] = score[i, j] >= minIoU;
            }
        return Maximize(score, eligible);
    }

    /// <summary>
    /// Pairs rows with columns so that first as many eligible pairs as possible are made, then their total score
    /// is largest. Returns, for each row, its column or -1.
    /// </summary>
    public static int[] Maximize(double[,] score, bool[,] eligible)
    {
        int rows = score.GetLength(0), cols = score.GetLength(1);
        if (eligible.GetLength(0) != rows || eligible.GetLength(1) != cols)
            throw new ArgumentException("score and eligible must have the same shape");
        var result = Enumerable.Repeat(-1, rows).ToArray();
        if (rows == 0 || cols == 0) return result;

        // The solver wants rows ≤ columns; solve the transpose otherwise.
        bool transpose = rows > cols;
        int n = transpose ? cols : rows, m = transpose ? rows : cols;
        double maxScore = 0;
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < cols; c++)
                if (eligible[r, c]) maxScore = Math.Max(maxScore, Math.Abs(score[r, c]));
        // An ineligible pair costs more than any set of eligible ones can save, so the match count wins first.
        double forbidden = (maxScore + 1) * (n + 1) * 2;
        double Cost(int i, int j)
        {
            var (r, c) = transpose ? (j, i) : (i, j);
            return eligible[r, c] ? -score[r, c] : forbidden;
        }

        // u, v: potentials; p[j]: row (1-based) matched to column j; way: augmenting path links.
        var u = new double[n + 1];
        var v = new double[m + 1];
        var p = new int[m + 1];
        var way = new int[m + 1];
        for (var i = 1; i <= n; i++)
        {
            p[0] = i;
            int j0 = 0;
            var minv = Enumerable.Repeat(double.PositiveInfinity, m + 1).ToArray();
            var used = new bool[m + 1];
            do
            {
                used[j0] = true;
                int i0 = p[j0], j1 = 0;
                double delta = double.PositiveInfinity;
                for (var j = 1; j <= m; j++)
                {
                    if (used[j]) continue;
                    var cur = Cost(i0 - 1, j - 1) - u[i0] - v[j];
                    if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
                    if (minv[j] < delta) { delta = minv[j]; j1 = j; }
                }
                for (var j = 0; j <= m; j++)
                {
                    if (used[j]) { u[p[j]] += delta; v[j] -= delta; }
                    else minv[j] -= delta;
                }
                j0 = j1;
            } while (p[j0] != 0);
            do
            {
                var j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
            } while (j0 != 0);
        }

        for (var j = 1; j <= m; j++)
        {
            if (p[j] == 0) continue;
            var (r, c) = transpose ? (j - 1, p[j] - 1) : (p[j] - 1, j - 1);
            if (eligible[r, c]) result[r] = c;
        }
        return result;
    }
}
