namespace Deid.Faces.Tests;

public class AssignmentTests
{
    [Fact]
    public void BoxesThatCrossKeepBothMatches()
    {
        // a0 overlaps b1 most, but b1 is a1's only partner: greedy (best pair first) pairs a0-b1 and leaves a1 alone.
        FaceBox Box(float left) => new(left, 0, left + 100, 100, 1);
        var a = new[] { Box(0), Box(60) };
        var b = new[] { Box(-40), Box(20), Box(500) };
        Assert.Equal([0, 1], Assignment.MatchByIoU(a, b, minIoU: 0.3f));
        // Below the overlap threshold nothing is paired.
        Assert.Equal([-1, -1], Assignment.MatchByIoU(a, b, minIoU: 0.9f));
        Assert.Equal([-1], Assignment.MatchByIoU([Box(0)], [], minIoU: 0.3f));
    }

    [Fact]
    public void MaximizesMatchesThenTotalScore()
    {
        var score = new double[,] { { 1.13, 1.03 }, { 0.56, 0 } };
        var eligible = new bool[,] { { true, true }, { true, false } };
        Assert.Equal([1, 0], Assignment.Maximize(score, eligible));
    }

    [Fact]
    public void RectangularAndIneligibleRowsGetMinusOne()
    {
        var score = new double[,] { { 0.9, 0.1, 0.5 }, { 0.2, 0.8, 0.3 } };
        var all = new bool[,] { { true, true, true }, { true, true, true } };
        Assert.Equal([0, 1], Assignment.Maximize(score, all));

        // More rows than columns: one row is left over; a row with nothing eligible is never forced.
        var tall = new double[,] { { 0.9 }, { 0.95 }, { 0.99 } };
        Assert.Equal([-1, 0, -1], Assignment.Maximize(tall, new bool[,] { { true }, { true }, { false } }));
        Assert.Equal([-1, -1], Assignment.Maximize(new double[2, 2], new bool[2, 2]));
        Assert.Empty(Assignment.Maximize(new double[0, 3], new bool[0, 3]));
    }

    [Fact]
    public void AgreesWithBruteForceOnRandomProblems()
    {
        var rnd = new Random(7);
        for (var trial = 0; trial < 300; trial++)
        {
            int n = rnd.Next(1, 6), m = rnd.Next(1, 6);
            var score = new double[n, m];
            var eligible = new bool[n, m];
            for (var i = 0; i < n; i++)
                for (var j = 0; j < m; j++) { score[i, j] = rnd.NextDouble() * 2; eligible[i, j] = rnd.NextDouble() < 0.6; }
            var got = Assignment.Maximize(score, eligible);
            Assert.Equal(Best(score, eligible, 0, new bool[m]), Value(got, score), 9);
        }
    }

    // (matches, total) packed so that one more match always outweighs any score difference.
    private static double Value(int[] rows, double[,] score) =>
        rows.Select((c, r) => c < 0 ? 0 : 1000 + score[r, c]).Sum();

    private static double Best(double[,] score, bool[,] eligible, int row, bool[] usedCols)
    {
        if (row == score.GetLength(0)) return 0;
        var best = Best(score, eligible, row + 1, usedCols);
        for (var c = 0; c < score.GetLength(1); c++)
        {
            if (usedCols[c] || !eligible[row, c]) continue;
            usedCols[c] = true;
            best = Math.Max(best, 1000 + score[row, c] + Best(score, eligible, row + 1, usedCols));
            usedCols[c] = false;
        }
        return best;
    }
}
