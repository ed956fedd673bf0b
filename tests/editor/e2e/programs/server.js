// The e2e's Node.js program: answers every request; "Run with cluster context" on
// deployment/blog mirrors the blog's requests to it, and the test's breakpoint is in `answer`.
const http = require("node:http");

const port = Number(process.env.PORT ?? 8080);

function answer(request, response) {
  const body = JSON.stringify({ from: "node", path: request.url });
  response.writeHead(200, { "Content-Type": "application/json" });
  response.end(body);
}

http.createServer(answer).listen(port, () => console.log(`node: listening on :${port}`));
