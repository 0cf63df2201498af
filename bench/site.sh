# bench/site.sh : sourced by the benchmarks that need the quick start's "library website".
# site_image LIFEBOAT DIR TAG : a busybox httpd serving /www (one index page), imported as TAG.
site_image() {
  local lb=$1 site=$2 tag=$3
  mkdir -p "$site/bin" "$site/www"
  cp "$(command -v busybox)" "$site/bin/busybox"
  for a in $(busybox --list); do [[ $a == busybox ]] || ln -s busybox "$site/bin/$a"; done
  echo '<h1>City Library</h1>' >"$site/www/index.html"
  "$lb" import "$site" "$tag" --change 'CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]' >/dev/null
}
