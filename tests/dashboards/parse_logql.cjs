// Parses LogQL queries with Grafana's own grammar (@grafana/lezer-logql, the parser of
// Grafana's Loki query editor). Input: a JSON array of queries on stdin. Output: a JSON
// array, per query { kind: the top expression's node name (LogExpr or MetricExpr),
// errors: [{ from, to, text }] for every error node }.
// Usage: node parse_logql.cjs LEZER_PREFIX < queries.json   (LEZER_PREFIX: where
// `npm install --prefix` put it, target/tools/lezer).
const path = require("path");
const { parser } = require(path.resolve(process.argv[2], "node_modules/@grafana/lezer-logql"));

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map((query) => {
    const tree = parser.parse(query);
    const errors = [];
    let kind = null;
    tree.iterate({
      enter: (node) => {
        if (node.type.isError) {
          errors.push({ from: node.from, to: node.to, text: query.slice(node.from, node.to + 10) });
        } else if (kind === null && (node.name === "LogExpr" || node.name === "MetricExpr")) {
          kind = node.name;
        }
      },
    });
    return { kind, errors };
  });
  process.stdout.write(JSON.stringify(out));
});
